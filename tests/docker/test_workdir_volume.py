"""The workdir is a volume on the daemon's side, and files move through the daemon: the sandbox
user owns it, it keeps files across cells and restarts, its size is exact, and the file API
follows no link, reads no special file and stays inside it."""

from __future__ import annotations

import asyncio
import hashlib
import io
import tarfile
from collections.abc import Iterator

import docker
import pytest

from engine.core.backends.docker.host import DockerHost
from engine.core.manager import SessionManager
from engine.core.sandbox import Sandbox
from engine.core.session import Session
from engine.errors import FileAccessError, FileNotFound, SandboxStartError, SessionLost
from engine.models import BackendName, Outcome, SessionSpec
from tests.conftest import TEST_LIMITS, gvisor_differs, on_gvisor
from tests.docker.conftest import containers_of, keepers_of, workdir_volume

pytestmark = pytest.mark.docker
MIB = 1 << 20
DISK_MB = TEST_LIMITS.disk_mb

UNSTOPPABLE = (
    "import time\nwhile True:\n    try:\n        time.sleep(0.01)\n    except BaseException:\n"
    "        pass"
)


async def run(session: Session, code: str) -> str:
    result = await session.execute(code, timeout_s=20)
    assert result.outcome is Outcome.COMPLETED, result
    return result.result_text or ""


async def test_the_workdir_is_the_sandbox_users_own_exact_tmpfs(docker_session: Session) -> None:
    seen = await run(
        docker_session,
        "import os\nst = os.stat('/workspace'); vfs = os.statvfs('/workspace')\n"
        "mounts = [l.split()[1:3] for l in open('/proc/self/mounts')]\n"
        "open('mine.txt', 'w').write('x')\n"
        "(os.getuid(), st.st_uid, oct(st.st_mode & 0o777), vfs.f_blocks * vfs.f_frsize >> 20,"
        " ['/workspace', 'tmpfs'] in mounts)",
    )
    uid, owner, mode, size_mb, tmpfs = eval(seen)
    # Under gVisor the volume reaches the sandbox through its file proxy (a 9p mount): that it is
    # a tmpfs is read back from the daemon (test_hardening.py).
    assert uid == owner != 0 and mode == "0o700" and (tmpfs or on_gvisor(docker_session))
    assert size_mb == DISK_MB


async def test_files_survive_cells_and_restarts(
    docker_session: Session, docker_client: docker.DockerClient
) -> None:
    await docker_session.write_file("uploaded.bin", b"up" * 1000)
    await run(docker_session, "open('made.txt', 'w').write('made')")
    assert await run(docker_session, "open('made.txt').read()") == "'made'"
    [keeper] = keepers_of(docker_client, docker_session)
    for _ in range(2):  # killed and replaced twice: the keeper holds the volume meanwhile
        killed = await docker_session.execute(UNSTOPPABLE, timeout_s=0.5)
        assert killed.outcome is Outcome.KILLED and not killed.state_preserved
        assert await run(docker_session, "open('made.txt').read()") == "'made'"
        assert await docker_session.read_file("uploaded.bin") == b"up" * 1000
    assert docker_session.info().restarts == 2
    assert [k.id for k in keepers_of(docker_client, docker_session)] == [keeper.id]


async def test_a_session_whose_files_are_gone_says_it_is_lost(
    docker_manager: SessionManager, docker_session: Session, docker_client: docker.DockerClient
) -> None:
    # The keeper holds the tmpfs; when it stops (a daemon restart stops every container), the
    # files are gone. The session must not carry on as if they were there: every call says it
    # is lost, until it is deleted, and the volume and containers go with it.
    await docker_session.write_file("kept.txt", b"kept")
    [keeper] = keepers_of(docker_client, docker_session)
    volume = workdir_volume(keeper)
    keeper.kill()
    [sandbox] = containers_of(docker_client, docker_session)
    sandbox.kill()
    try:  # a cell sent before the engine saw the sandbox die ends crashed; the next calls say why
        crashed = await docker_session.execute("1 + 1")
    except SessionLost:
        pass
    else:
        assert crashed.outcome is Outcome.CRASHED, crashed
    for call in (
        lambda: docker_session.execute("1 + 1"),
        lambda: docker_session.read_file("kept.txt"),
        lambda: docker_session.write_file("new.txt", b"x"),
    ):
        with pytest.raises(SessionLost, match="working directory is gone"):
            await call()
    assert docker_session.info().state == "broken"
    await docker_manager.close(docker_session.id)
    assert containers_of(docker_client, docker_session) == []
    assert keepers_of(docker_client, docker_session) == []
    assert docker_client.volumes.list(filters={"name": volume}) == []


async def test_files_gone_while_a_sandbox_is_replaced_are_noticed(
    docker_session: Session, docker_client: docker.DockerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The keeper may stop after the check made before a replacement starts (after a daemon
    # outage it stops a moment after the connection it hangs on broke): the replacement then
    # mounts an empty volume. The session must say it is lost, not run cells without its files.
    await docker_session.write_file("kept.txt", b"kept")
    [keeper] = keepers_of(docker_client, docker_session)
    spawn = DockerHost.spawn

    async def spawn_once_the_keeper_stopped(host: DockerHost) -> Sandbox:
        await asyncio.to_thread(keeper.kill)
        await asyncio.to_thread(keeper.wait, timeout=30)
        return await spawn(host)

    monkeypatch.setattr(DockerHost, "spawn", spawn_once_the_keeper_stopped)
    killed = await docker_session.execute(UNSTOPPABLE, timeout_s=0.5)  # replaced: the race
    assert killed.outcome is Outcome.KILLED
    with pytest.raises(SessionLost, match="working directory is gone"):
        await docker_session.execute("open('kept.txt').read()")
    assert containers_of(docker_client, docker_session) == []  # the replacement is not kept


async def test_the_disk_limit_is_exact(docker_session: Session) -> None:
    chunk = int(DISK_MB * 0.6) * MIB
    fill = f"open('{{}}', 'wb').write(b'x' * {chunk})"
    await run(docker_session, fill.format("first"))
    second = await docker_session.execute(fill.format("second"), timeout_s=20)
    assert second.outcome is Outcome.ERROR and second.error is not None
    assert "No space left" in second.error.value
    falloc = await docker_session.execute(
        f"import os\nfd = os.open('big', os.O_CREAT | os.O_WRONLY)\nos.posix_fallocate(fd, 0, {4 * DISK_MB * MIB})",
        timeout_s=20,
    )
    assert falloc.outcome is Outcome.ERROR
    await run(
        docker_session,
        "import os\nfor p in ('second', 'big'):\n    os.path.exists(p) and os.remove(p)",
    )
    # Through the file API: refused, and the half-written upload does not keep the space.
    with pytest.raises(FileAccessError, match="no space left"):
        await docker_session.write_file("upload", b"u" * chunk)
    with pytest.raises(FileAccessError, match="larger than the workdir"):
        await docker_session.write_file("huge", b"u" * (DISK_MB * MIB + 1))
    assert {f.path for f in await docker_session.list_files()} == {"first"}
    await docker_session.write_file("small", b"fits")
    assert await run(docker_session, "open('small').read()") == "'fits'"


@gvisor_differs(
    "runsc 20221219 drops what a single write of 64 KiB or more to a `docker exec` stdout does not "
    "fit in the pipe (32 KiB writes all arrive), and the file helper writes 1 MiB chunks: reading "
    "a file over 64 KiB hangs",
    run=False,
)
async def test_files_move_both_ways_at_any_depth(
    docker_session: Session, docker_client: docker.DockerClient
) -> None:
    blob = bytes(range(256)) * (3 * MIB // 256)
    await docker_session.write_file("top.bin", blob)
    await docker_session.write_file("/workspace/a/b/deep.bin", blob[:1000])
    await docker_session.write_file("top.bin", b"replaced")  # an existing file is replaced
    seen = await run(
        docker_session,
        "import hashlib, os\nst = os.stat('a/b/deep.bin')\n"
        "(open('top.bin', 'rb').read(), hashlib.sha256(open('a/b/deep.bin', 'rb').read()).hexdigest(),"
        " st.st_uid == os.getuid(), oct(st.st_mode & 0o777))",
    )
    assert eval(seen) == (b"replaced", hashlib.sha256(blob[:1000]).hexdigest(), True, "0o600")
    await run(
        docker_session,
        "import os\nos.makedirs('out/x', exist_ok=True)\n"
        "open('out/x/result.csv', 'w').write('a,b\\n1,2\\n')\nopen('made.bin', 'wb').write(bytes(range(256)) * 4096)",
    )
    assert await docker_session.read_file("out/x/result.csv") == b"a,b\n1,2\n"
    assert await docker_session.read_file("/workspace/made.bin") == bytes(range(256)) * 4096
    listed = {f.path: f.size for f in await docker_session.list_files()}
    assert listed == {
        "top.bin": 8,
        "a/b/deep.bin": 1000,
        "out/x/result.csv": 8,
        "made.bin": 256 * 4096,
    }
    with pytest.raises(FileAccessError, match="larger than 100 bytes"):
        await docker_session.read_file("made.bin", max_bytes=100)
    with pytest.raises(FileAccessError, match="larger than 4 bytes"):
        await docker_session.read_file("out/x/result.csv", max_bytes=4)
    with pytest.raises(FileNotFound):
        await docker_session.read_file("missing.txt")
    with pytest.raises(FileNotFound):
        await docker_session.read_file("out/missing.txt")


LINKS_AND_SPECIALS = """
import os
os.symlink('/etc/shadow', 'shadow')
os.symlink('/etc', 'etc')
os.symlink('/proc/self/environ', 'environ')
os.mkfifo('fifo')
os.mkdir('sub')
with open('sparse', 'wb') as f:
    f.truncate({size})
os.makedirs('real/inner')
os.symlink('/etc', 'real/inner/etc')
"""


# Found with runsc 20221219; the file helper (engine/agent/tree.py) can refuse it itself by comparing
# each opened directory with an lstat of its name.
FOLLOWS = gvisor_differs(
    "open(O_DIRECTORY | O_NOFOLLOW) follows a symlink as the last component, so the file helper "
    "walks through a link to the keeper's own /etc (inside its sandbox, not the host's)"
)
NO_FIFO = gvisor_differs(
    "a FIFO made in the sandbox is missing from the keeper's view of the volume"
)


@pytest.mark.parametrize(
    ("path", "error"),
    [
        ("shadow", "cannot read 'shadow': Too many levels of symbolic links"),
        ("environ", "cannot read 'environ': Too many levels of symbolic links"),
        pytest.param("etc/passwd", "not a plain directory", marks=FOLLOWS),
        pytest.param("etc/shadow", "not a plain directory", marks=FOLLOWS),
        pytest.param("real/inner/etc/shadow", "not a plain directory", marks=FOLLOWS),
        pytest.param("fifo", "not a regular file", marks=NO_FIFO),
        ("sub", "not a regular file"),
        ("sparse", "larger than 1024 bytes"),
        ("../etc/passwd", "does not name a file"),
        ("/etc/passwd", "outside the session's working directory"),
        ("real/../../x", "does not name a file"),
    ],
)
async def test_links_special_files_and_escapes_are_refused(
    docker_session: Session, path: str, error: str
) -> None:
    await run(docker_session, LINKS_AND_SPECIALS.format(size=DISK_MB * MIB - 1))
    with pytest.raises(FileAccessError, match=error):
        await asyncio.wait_for(docker_session.read_file(path, max_bytes=1024), 20)
    if not path.startswith(("shadow", "environ", "fifo", "sparse")):  # those names can be replaced
        with pytest.raises(FileAccessError):
            await docker_session.write_file(path if path != "etc/passwd" else "etc/new", b"x")
    listed = {f.path for f in await docker_session.list_files()}
    assert listed == {"sparse"}  # links, the FIFO and what lies behind links are not listed


async def test_uploads_never_follow_a_link_nor_replace_a_directory(docker_session: Session) -> None:
    await run(
        docker_session,
        "import os\nos.symlink('/tmp/target', 'ln')\nopen('/tmp/target', 'w').write('kept')\n"
        "os.makedirs('d/e')",
    )
    with pytest.raises(FileAccessError, match="cannot write 'ln'"):
        await docker_session.write_file("ln", b"new")
    with pytest.raises(FileAccessError, match="is a directory"):
        await docker_session.write_file("d", b"x")
    seen = await run(
        docker_session, "(os.readlink('ln'), open('/tmp/target').read(), os.path.isdir('d/e'))"
    )
    assert eval(seen) == ("/tmp/target", "kept", True)


@pytest.fixture
def image_without_python(docker_client: docker.DockerClient) -> Iterator[str]:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as out:
        data = b"no python here\n"
        info = tarfile.TarInfo("etc/motd")
        info.size = len(data)
        out.addfile(info, io.BytesIO(data))
    name = "lci-test-no-python:latest"
    docker_client.api.import_image_from_data(
        buffer.getvalue(), repository=name.split(":", maxsplit=1)[0], tag="latest"
    )
    yield name
    docker_client.images.remove(name, force=True)


async def test_an_image_without_python3_is_a_clear_error(
    docker_manager: SessionManager, image_without_python: str, docker_client: docker.DockerClient
) -> None:
    spec = SessionSpec(backend=BackendName.DOCKER, limits=TEST_LIMITS, image=image_without_python)
    with pytest.raises(SandboxStartError, match=r"before the agent started.*exec python3 failed"):
        await docker_manager.create(spec)
    session = await docker_manager.create(
        SessionSpec(backend=BackendName.DOCKER, limits=TEST_LIMITS)
    )
    assert await run(session, "1 + 1") == "2"
    await docker_manager.close(session.id)
    left = docker_client.containers.list(all=True, filters={"ancestor": image_without_python})
    assert left == []
