"""Crashes around the engine: an engine killed with SIGKILL leaves containers that the next start
removes; a daemon that goes away mid-session is a specific error, and the engine survives it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import docker
import pytest

from engine.config import Settings
from engine.core.backends.docker.api import DockerAPI
from engine.core.backends.docker.backend import DockerBackend
from engine.core.backends.docker.spec import LABEL_ROLE
from engine.core.manager import SessionManager
from engine.errors import BackendUnavailable, SandboxError, SessionLost
from engine.models import BackendName, Outcome, SessionSpec
from tests.conftest import TEST_LIMITS
from tests.docker.conftest import labelled, volumes_labelled

pytestmark = pytest.mark.docker
DOCKER = BackendName.DOCKER

ENGINE = """
import asyncio, sys
from engine.config import Settings
from engine.core.manager import SessionManager
from engine.models import BackendName, Limits, SessionSpec

async def main():
    limits = Limits(memory_mb=128, max_procs=16, disk_mb=8)
    settings = Settings(state_dir=sys.argv[1], docker_warm_pool=1, limits=limits)
    manager = SessionManager(settings)
    session = await manager.create(SessionSpec(backend=BackendName.DOCKER, limits=limits))
    await session.write_file("left.txt", b"behind")
    assert await (await manager.backend(BackendName.DOCKER)).warm_up(60)
    print("ready", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


async def test_sigkilled_engine_is_cleaned_up_by_the_next_start(
    docker_settings: Settings, docker_client: docker.DockerClient
) -> None:
    state = docker_settings.state_dir
    engine = subprocess.Popen(
        [sys.executable, "-c", ENGINE, str(state)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert engine.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(engine.stdout.readline), 120)
        assert line.strip() == "ready"
        left = [c for c in labelled(docker_client, "lci.owner") if _owned_by(c, engine.pid)]
        assert len(left) == 2  # the session's container and one warm container
        keepers = [
            c for c in labelled(docker_client, "lci.owner", True) if _owned_by(c, engine.pid)
        ]
        assert len(keepers) == 2
        volumes = [
            v for v in volumes_labelled(docker_client, "lci.owner") if _owned_by(v, engine.pid)
        ]
        assert len(volumes) >= 2  # the two workdirs (and the agent's, for an image without it)
    finally:
        engine.send_signal(signal.SIGKILL)
        engine.wait()
        if engine.stdout is not None:
            engine.stdout.close()
        # The crash left everything behind, until the next engine starts its docker backend.
        leftovers = [c for c in labelled(docker_client, "lci.owner") if _owned_by(c, engine.pid)]
        backend = await asyncio.to_thread(DockerBackend, docker_settings)
        await backend.close()
    assert leftovers
    for keepers in (False, True):
        left = labelled(docker_client, "lci.owner", keepers)
        assert [c for c in left if _owned_by(c, engine.pid)] == []
    volumes = volumes_labelled(docker_client, "lci.owner")
    assert [v for v in volumes if _owned_by(v, engine.pid)] == []


def _owned_by(thing: Any, pid: int) -> bool:
    """Whether a container or volume is labelled as made by the engine process `pid`."""
    labels = thing.attrs.get("Labels") or thing.attrs["Config"].get("Labels") or {}
    return bool(labels.get("lci.owner", "").startswith(f"{pid}."))


class DaemonProxy:
    """A unix socket that forwards to the real daemon, and can 'die': it then drops every
    connection and refuses new ones, which is what the engine sees when dockerd crashes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        self.upstream = host.removeprefix("unix://")
        self.server: asyncio.AbstractServer | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_unix_server(self._accept, str(self.path))

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.get_running_loop().create_task(self._serve(reader, writer))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_unix_connection(self.upstream)
        except OSError:
            writer.close()
            return
        self.writers.add(up_writer)
        try:
            await asyncio.gather(
                _pipe(reader, up_writer), _pipe(up_reader, writer), return_exceptions=True
            )
        finally:
            for each in (writer, up_writer):
                each.close()
                self.writers.discard(each)

    async def die(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in list(self.writers):
            writer.transport.abort()
        await self.server.wait_closed()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.path.unlink(missing_ok=True)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(1 << 16):
        writer.write(data)
        await writer.drain()
    if writer.can_write_eof():
        writer.write_eof()


# While the daemon is down, every call fails to connect; none may leave a socket open (docker-py
# leaks those, docker/docker-py#3356: the engine closes them). Garbage is collected before the test
# ends, so a socket left open would be reported against this test, not a later one.
@pytest.mark.usefixtures("collect_garbage")
async def test_daemon_dying_mid_session_is_a_specific_error(
    docker_settings: Settings,
    docker_client: docker.DockerClient,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    proxy = DaemonProxy(tmp_path / "docker.sock")
    await proxy.start()
    monkeypatch.setenv("DOCKER_HOST", f"unix://{proxy.path}")
    try:
        await _lose_and_regain_the_daemon(docker_settings, docker_client, proxy)
    finally:
        await proxy.die()  # its sockets are closed whatever failed


async def _lose_and_regain_the_daemon(
    docker_settings: Settings, docker_client: docker.DockerClient, proxy: DaemonProxy
) -> None:
    async with SessionManager(docker_settings) as manager:
        session = await manager.create(SessionSpec(backend=DOCKER, limits=TEST_LIMITS))
        bystander = await manager.create(SessionSpec(limits=TEST_LIMITS))  # subprocess backend
        assert (await session.execute("1 + 1")).result_text == "2"
        await session.write_file("kept.txt", b"kept")
        await proxy.die()
        try:
            result = await session.execute("2 + 2")
        except BackendUnavailable:
            pass  # the loss was noticed before the cell was sent
        else:
            assert result.outcome is Outcome.CRASHED and result.error is not None
            assert "Docker daemon" in result.error.value
        with pytest.raises(BackendUnavailable, match="Docker daemon") as away:
            await session.execute("3 + 3")
        assert away.value.retry_after_s == 5  # the server's 503 says when to come back
        for file_operation in (
            session.list_files,
            lambda: session.read_file("x"),
            lambda: session.write_file("x", b"x"),
        ):
            with pytest.raises(BackendUnavailable, match="Docker daemon"):
                await file_operation()
        assert (await bystander.execute("4 + 4")).result_text == "8"
        # The daemon comes back. The keeper holds the workdir only as long as the engine's
        # connection: if it has stopped by now, the files went with it and the session says it
        # is lost; if not yet, the session carries on with its files. Never on without them.
        await proxy.start()
        try:
            carried_on = await session.execute("open('kept.txt').read()")
        except SessionLost as exc:
            assert "working directory is gone" in exc.message
        else:
            assert carried_on.result_text == "'kept'", carried_on
        fresh = await manager.create(SessionSpec(backend=DOCKER, limits=TEST_LIMITS))
        assert (await fresh.execute("5 + 5")).result_text == "10"
        backend = await manager.backend(DOCKER)
        assert isinstance(backend, DockerBackend)
    assert labelled(docker_client, f"lci.backend={backend.backend_id}") == []


class RefusesOneSandboxStart(DockerAPI):
    """The real daemon, except that the first sandbox container's start is refused the way a
    loaded daemon now and then refuses one (the keeper's start is left alone)."""

    refused = 0

    def start(self, container_id: str) -> None:
        role = self._api.inspect_container(container_id)["Config"]["Labels"].get(LABEL_ROLE)
        if role != "keeper" and not self.refused:
            self.refused += 1
            self._api.remove_container(container_id, force=True)
            raise SandboxError("starting the container: Docker refused: OCI runtime create failed")
        super().start(container_id)


async def test_a_container_start_the_runtime_refuses_is_tried_once_more(
    docker_settings: Settings,
) -> None:
    async with SessionManager(
        docker_settings.model_copy(update={"docker_warm_pool": 0})
    ) as manager:
        backend = await manager.backend(DOCKER)
        assert isinstance(backend, DockerBackend)
        backend.api = flaky = RefusesOneSandboxStart()
        session = await manager.create(SessionSpec(backend=DOCKER, limits=TEST_LIMITS))
        assert flaky.refused == 1
        assert (await session.execute("6 * 7")).result_text == "42"
