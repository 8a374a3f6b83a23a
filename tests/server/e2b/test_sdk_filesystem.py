"""envd's filesystem service through E2B's own SDK (unchanged) against a real `lci serve`:
directories, entries with all their fields, moves, removal, metadata, watchers (polled and
streamed), signed file URLs; and the attacks on each: paths out of the workdir, planted links."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from e2b import AsyncSandbox, FilesystemEventType, SandboxException
from e2b.exceptions import FileNotFoundException, InvalidArgumentException
from e2b_code_interpreter import Sandbox

from tests.server.helpers import LciServer


@pytest.fixture
def sandbox(e2b_env: LciServer) -> Iterator[Sandbox]:
    sbx = Sandbox.create()
    yield sbx
    sbx.kill()


def test_directories_entries_moves_and_removal(sandbox: Sandbox) -> None:
    files = sandbox.files
    assert files.make_dir("a/b") is True
    assert files.make_dir("/home/user/a/b") is False  # exists: E2B's ALREADY_EXISTS flag
    files.write("a/b/f.txt", "four")
    assert [(e.path, e.type.value) for e in files.list("a", depth=2) if e.type] == [
        ("/home/user/a/b", "dir"),
        ("/home/user/a/b/f.txt", "file"),
    ]
    info = files.get_info("a/b/f.txt")
    assert (info.name, info.size, info.mode, info.permissions) == ("f.txt", 4, 0o644, "-rw-r--r--")
    assert (info.owner, info.group, info.symlink_target) == ("user", "user", None)
    directory = files.get_info("a/b")
    assert (directory.type.value, directory.mode, directory.permissions) == (
        "dir",
        0o755,
        "drwxr-xr-x",
    )
    moved = files.rename("a/b/f.txt", "c/g.txt")
    assert moved.path == "/home/user/c/g.txt" and files.read("c/g.txt") == "four"
    with pytest.raises(FileNotFoundException):
        files.rename("a/b/f.txt", "x")
    files.remove("a")
    files.remove("a")  # nothing there: fine, as envd
    assert not files.exists("a") and files.exists("c/g.txt")
    with pytest.raises(FileNotFoundException):
        files.list("a")


def test_metadata_is_kept_and_replaced(sandbox: Sandbox) -> None:
    written = sandbox.files.write("m.txt", "x", metadata={"Author": "ann"})
    assert written.metadata == {"author": "ann"}  # keys lowercased, as envd
    assert sandbox.files.get_info("m.txt").metadata == {"author": "ann"}
    sandbox.files.write("m.txt", "y")
    assert sandbox.files.get_info("m.txt").metadata is None


def test_watchers_report_changes(sandbox: Sandbox) -> None:
    sandbox.files.make_dir("w")
    handle = sandbox.files.watch_dir("w", recursive=True, include_entry=True)
    sandbox.files.write("w/sub/new.txt", "data")
    events = [(e.type, e.name) for e in handle.get_new_events()]
    assert (FilesystemEventType.CREATE, "sub") in events
    assert (FilesystemEventType.WRITE, "sub/new.txt") in events
    sandbox.files.remove("w/sub/new.txt")
    assert [(e.type, e.name) for e in handle.get_new_events()] == [
        (FilesystemEventType.REMOVE, "sub/new.txt")
    ]
    handle.stop()
    with pytest.raises(SandboxException):
        handle.get_new_events()
    with pytest.raises(FileNotFoundException):
        sandbox.files.watch_dir("missing")


def test_streamed_watch(e2b_env: LciServer) -> None:
    async def scenario() -> list[tuple[str, str]]:
        sbx = await AsyncSandbox.create()
        try:
            await sbx.files.make_dir("s")
            seen: list[tuple[str, str]] = []
            done = asyncio.Event()

            def on_event(event: object) -> None:
                seen.append((event.type.value, event.name))  # type: ignore[attr-defined]
                done.set()

            handle = await sbx.files.watch_dir("s", on_event)
            await sbx.files.write("s/one.txt", "1")
            await asyncio.wait_for(done.wait(), 10)
            await handle.stop()
            return seen
        finally:
            await sbx.kill()

    assert ("create", "one.txt") in asyncio.run(scenario())


def test_signed_urls(e2b_env: LciServer) -> None:
    sbx = Sandbox.create(secure=True)
    try:
        sbx.files.write("shared.txt", "signed content")
        with urllib.request.urlopen(sbx.download_url("shared.txt", "user", 60)) as response:
            assert response.read() == b"signed content"
        upload = urllib.request.Request(
            sbx.upload_url("up.txt", "user"),
            data=b"raw",
            method="POST",
            headers={"Content-Type": "application/octet-stream"},
        )
        with urllib.request.urlopen(upload) as response:
            assert response.status == 200
        assert sbx.files.read("up.txt") == "raw"
        expired = sbx.download_url("shared.txt", "user", use_signature_expiration=-120)
        assert _status(expired) == 401
        tampered = sbx.download_url("shared.txt", "user").replace("shared.txt", "up.txt")
        assert _status(tampered) == 401  # the signature binds the path
        assert _status(sbx.download_url("x.txt", "user"), b"") == 401  # and the operation
    finally:
        sbx.kill()


def _status(url: str, upload: bytes | None = None) -> int:
    request = urllib.request.Request(
        url, data=upload, method="POST" if upload is not None else "GET"
    )
    try:
        with urllib.request.urlopen(request) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        with error:
            return error.code


def test_filesystem_attacks_are_refused(sandbox: Sandbox) -> None:
    sandbox.run_code("import os; os.symlink('/etc', 'etc_link'); os.mkfifo('pipe')")
    files = sandbox.files
    link = files.get_info("etc_link")
    assert (link.type.value, link.symlink_target) == ("symlink", "/etc")
    for attempt in (
        lambda: files.make_dir("/etc/evil"),
        lambda: files.make_dir("../evil"),
        lambda: files.remove("/etc/hostname"),
        lambda: files.rename("/etc/hostname", "stolen"),
        lambda: files.rename("pipe", "/tmp/pipe"),
        lambda: files.list("/etc"),
        lambda: files.get_info("/etc/passwd"),
        lambda: files.list("etc_link"),
        lambda: files.get_info("etc_link/passwd"),
        lambda: files.make_dir("etc_link/evil"),
        lambda: files.remove("etc_link/hostname"),
        lambda: files.rename("etc_link/hostname", "stolen"),
        lambda: files.watch_dir("etc_link"),
        lambda: files.read("pipe"),
    ):
        with pytest.raises((SandboxException, InvalidArgumentException)):
            attempt()
    files.remove("etc_link")  # the link itself
    assert sandbox.run_code("import os; os.path.exists('/etc/hostname')").text == "True"


def test_get_info_of_a_link_inside_describes_its_target(sandbox: Sandbox) -> None:
    """As envd's Stat: a link to a file in the working directory is that file (its type and
    size), naming its target; a chain of links is followed; a dangling one stays a link."""
    sandbox.files.write("data/real.txt", "12345")
    sandbox.run_code(
        "import os\nos.symlink('real.txt', 'data/link')\nos.symlink('link', 'data/chain')\n"
        "os.symlink('data', 'dir_link')\nos.symlink('gone', 'dangling')"
    )
    for name in ("data/link", "data/chain"):
        info = sandbox.files.get_info(name)
        assert (info.type.value, info.size, info.name) == ("file", 5, name.split("/")[-1])
    assert sandbox.files.get_info("data/link").symlink_target == "/home/user/data/real.txt"
    assert sandbox.files.get_info("dir_link").type.value == "dir"
    assert sandbox.files.get_info("dangling").type.value == "symlink"
