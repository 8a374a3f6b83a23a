"""Container lifecycle: the warm pool, the timeout ladder's container replacement, images, clean
shutdown, and the errors when Docker is not there."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from engine.config import Settings
from engine.core.agent_files import agent_digest, agent_tar
from engine.core.backends.docker.backend import DockerBackend
from engine.core.manager import SessionManager
from engine.errors import BackendUnavailable, ImageNotFound, SandboxStartError
from engine.models import BackendName, Outcome, SessionSpec
from tests.conftest import TEST_LIMITS
from tests.docker.conftest import (
    containers_of,
    keepers_of,
    labelled,
    volumes_labelled,
    workdir_volume,
)

pytestmark = pytest.mark.docker
DOCKER = BackendName.DOCKER


def has_file(container: Any, name: str) -> bool:
    """Whether the running container sees `name` in its /workspace."""
    code, _ = container.exec_run(["test", "-f", f"/workspace/{name}"], user="1000:1000")
    return code == 0


async def test_interrupt_keeps_the_container_and_a_kill_replaces_it(
    make_docker_session: Any, docker_client: docker.DockerClient
) -> None:
    session = await make_docker_session(cpu_s=100)
    await session.execute("x = 1")
    [before] = containers_of(docker_client, session)
    interrupted = await session.execute("import time\ntime.sleep(60)", timeout_s=0.5)
    assert interrupted.outcome is Outcome.INTERRUPTED and interrupted.state_preserved
    assert [c.id for c in containers_of(docker_client, session)] == [before.id]
    unstoppable = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True: pass"
    killed = await session.execute(unstoppable, timeout_s=0.5)
    assert killed.outcome is Outcome.KILLED and not killed.state_preserved
    [after] = containers_of(docker_client, session)  # the old one is removed, not just stopped
    assert after.id != before.id and after.status == "running"
    assert (await session.execute("'x' in globals()")).result_text == "False"
    assert session.info().restarts == 1


async def test_closing_a_session_removes_its_container_keeper_and_volume(
    docker_manager: SessionManager, docker_client: docker.DockerClient
) -> None:
    session = await docker_manager.create(SessionSpec(backend=DOCKER, limits=TEST_LIMITS))
    await session.write_file("data.txt", b"payload")
    [container] = containers_of(docker_client, session)
    assert has_file(container, "data.txt")
    volume = workdir_volume(container)
    assert [v.name for v in volumes_labelled(docker_client, f"lci.session={session.id}")] == [
        volume
    ]
    assert len(keepers_of(docker_client, session)) == 1
    await docker_manager.close(session.id)
    assert containers_of(docker_client, session) == keepers_of(docker_client, session) == []
    assert volumes_labelled(docker_client, f"lci.session={session.id}") == []


async def test_warm_pool_is_claimed_and_refills(
    docker_settings: Settings, docker_client: docker.DockerClient
) -> None:
    preload = ["numpy", "matplotlib.pyplot", "no_such_module_here"]
    settings = docker_settings.model_copy(update={"docker_warm_pool": 2, "preload": preload})
    async with SessionManager(settings) as manager:
        backend = await manager.backend(DOCKER)
        assert isinstance(backend, DockerBackend)
        assert await backend.warm_up(timeout=60)
        pooled = labelled(docker_client, f"lci.backend={backend.backend_id}")
        assert len(pooled) == 2
        session = await manager.create(SessionSpec(backend=DOCKER, limits=TEST_LIMITS))
        # The session's code runs in one of the pooled containers: what it writes shows up in
        # that container's workdir. (How fast the claim is, benchmarks/ measures.)
        await session.execute("open('claimed.txt', 'w').close()")
        [claimed] = [c for c in pooled if has_file(c, "claimed.txt")]
        assert (await session.execute("1 + 1")).result_text == "2"
        # The pooled container imported the modules while it waited (a missing one is skipped),
        # into sys.modules only; matplotlib already draws through the agent's backend.
        imported = (
            "import sys\n('numpy' in sys.modules, 'numpy' in globals(), 'pandas' in sys.modules)"
        )
        assert (await session.execute(imported)).result_text == "(True, False, False)"
        backend_name = "import matplotlib\nmatplotlib.get_backend()"
        assert "lci_agent" in (await session.execute(backend_name)).result_text
        # Different limits or environment cannot use a pool container: a fresh one is started.
        other = await manager.create(
            SessionSpec(backend=DOCKER, limits=TEST_LIMITS.model_copy(update={"memory_mb": 300}))
        )
        [container] = containers_of(docker_client, other)
        assert container.attrs["HostConfig"]["Memory"] == 300 << 20
        assert (await other.execute(imported)).result_text == "(False, False, False)"
        env = await manager.create(SessionSpec(backend=DOCKER, limits=TEST_LIMITS, env={"A": "b"}))
        assert (await env.execute("import os; os.environ['A']")).result_text == "'b'"
        assert await backend.warm_up(timeout=60)
        mine = labelled(docker_client, f"lci.backend={backend.backend_id}")
        # Labels cannot change, so a claimed container keeps lci.session=pool; its name says
        # which session claimed it.
        assert sorted(c.name.startswith("lci-pool-") for c in mine) == [False] * 3 + [True] * 2
        assert [c.id for c in mine if c.name == f"lci-{session.id}-0"] == [claimed.id]
    mine_label = f"lci.backend={backend.backend_id}"
    assert labelled(docker_client, mine_label) == labelled(docker_client, mine_label, True) == []
    assert volumes_labelled(docker_client, mine_label) == []


async def test_missing_image_says_how_to_build_it(docker_settings: Settings) -> None:
    settings = docker_settings.model_copy(update={"docker_image": "lci-no-such-image:missing"})
    async with SessionManager(settings) as manager:
        with pytest.raises(ImageNotFound, match="lci image build"):
            await manager.create(SessionSpec(backend=DOCKER, limits=TEST_LIMITS))
        # The engine keeps serving the other backend.
        session = await manager.create(SessionSpec(limits=TEST_LIMITS))
        assert (await session.execute("1 + 1")).result_text == "2"


@pytest.fixture
def derived_image(docker_client: docker.DockerClient, docker_settings: Settings) -> Iterator[Any]:
    """make(changes) -> the name of a throwaway image derived from the sandbox image."""
    made: list[str] = []

    def make(*changes: str) -> str:
        container = docker_client.containers.create(docker_settings.docker_image, "true")
        try:
            name = f"lci-test-derived:{len(made)}-{container.id[:8]}"
            container.commit(*name.split(":"), changes=list(changes))
        finally:
            container.remove()
        made.append(name)
        return name

    yield make
    for name in made:
        docker_client.images.remove(name)


async def test_image_for_another_protocol_is_refused(
    docker_manager: SessionManager, derived_image: Any
) -> None:
    image = derived_image("LABEL lci.agent_protocol=999")
    with pytest.raises(SandboxStartError, match="agent protocol 999"):
        await docker_manager.create(SessionSpec(backend=DOCKER, limits=TEST_LIMITS, image=image))


async def test_any_python3_image_works_whatever_its_user_entrypoint_and_workdir(
    docker_manager: SessionManager, derived_image: Any
) -> None:
    image = derived_image(
        "LABEL lci.agent_protocol=", "USER root", "WORKDIR /", 'ENTRYPOINT ["/bin/false"]'
    )
    session = await docker_manager.create(
        SessionSpec(backend=DOCKER, limits=TEST_LIMITS, image=image)
    )
    result = await session.execute("import os; (os.getuid(), os.getcwd())")
    assert result.result_text == "(1000, '/workspace')"
    await docker_manager.close(session.id)  # its container must go before the image can


async def test_no_daemon_is_backend_unavailable(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-daemon.sock")
    async with SessionManager(settings) as manager:
        with pytest.raises(BackendUnavailable, match="Docker daemon"):
            await manager.create(SessionSpec(backend=DOCKER, limits=TEST_LIMITS))
        session = await manager.create(SessionSpec(limits=TEST_LIMITS))
        assert (await session.execute("1 + 1")).result_text == "2"


@pytest.fixture
def image_with_agent(
    docker_client: docker.DockerClient, docker_settings: Settings
) -> Iterator[Any]:
    """make(digest) -> an image with this engine's agent at /opt/lci-agent and the label
    lci.agent_digest=digest, the way `lci image build` makes one."""
    made: list[str] = []

    def make(digest: str) -> str:
        container = docker_client.containers.create(docker_settings.docker_image, "true", user="0")
        try:
            assert container.put_archive("/", _agent_at_opt())
            name = f"lci-test-agent:{len(made)}-{container.id[:8]}"
            container.commit(*name.split(":"), changes=[f"LABEL lci.agent_digest={digest}"])
        finally:
            container.remove()
        made.append(name)
        return name

    yield make
    for name in made:
        docker_client.images.remove(name)


def _agent_at_opt() -> bytes:
    buffer = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(agent_tar())) as source,
        tarfile.open(fileobj=buffer, mode="w") as out,
    ):
        for member in source.getmembers():
            data = source.extractfile(member) if member.isreg() else None
            member.name = f"opt/lci-agent/{member.name}"
            out.addfile(member, data)
    return buffer.getvalue()


async def test_the_agent_comes_from_the_image_when_its_digest_matches_else_from_a_volume(
    docker_manager: SessionManager, image_with_agent: Any, docker_client: docker.DockerClient
) -> None:
    built_in = image_with_agent(agent_digest())
    stale = image_with_agent("0123456789abcdef")
    for image, mounted in ((built_in, False), (stale, True)):
        session = await docker_manager.create(
            SessionSpec(backend=DOCKER, limits=TEST_LIMITS, image=image)
        )
        assert (await session.execute("1 + 1")).result_text == "2"
        await session.write_file("a/b.txt", b"through the helper")
        assert await session.read_file("a/b.txt") == b"through the helper"
        for container in containers_of(docker_client, session) + keepers_of(docker_client, session):
            agent = [m for m in container.attrs["Mounts"] if m["Destination"] == "/opt/lci-agent"]
            assert bool(agent) is mounted, image
            assert all(m["Type"] == "volume" and not m["RW"] for m in agent)
        await docker_manager.close(session.id)  # its containers must go before the image can
