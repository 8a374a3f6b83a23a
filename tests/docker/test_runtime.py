"""`LCI_DOCKER_RUNTIME` (`lci serve --docker-runtime`): the OCI runtime the daemon runs sandbox
containers with (gVisor's `runsc` where it is registered). The container really gets it, and a
runtime the daemon does not know is refused when the session starts, saying so."""

from __future__ import annotations

import docker
import pytest

from engine.config import Settings
from engine.core.manager import SessionManager
from engine.errors import LCIError
from engine.models import BackendName, SessionSpec
from tests.conftest import TEST_LIMITS
from tests.docker.conftest import containers_of

SPEC = SessionSpec(backend=BackendName.DOCKER, limits=TEST_LIMITS)


async def test_containers_run_on_the_named_runtime(
    docker_settings: Settings, docker_client: docker.DockerClient
) -> None:
    settings = docker_settings.model_copy(update={"docker_runtime": "runc"})
    async with SessionManager(settings) as manager:
        session = await manager.create(SPEC)
        assert (await session.execute("6 * 7")).result_text == "42"
        (container,) = containers_of(docker_client, session)
        assert container.attrs["HostConfig"]["Runtime"] == "runc"


async def test_an_unknown_runtime_is_refused_by_name(docker_settings: Settings) -> None:
    settings = docker_settings.model_copy(update={"docker_runtime": "no-such-runtime"})
    async with SessionManager(settings) as manager:
        with pytest.raises(LCIError, match="no-such-runtime"):
            await manager.create(SPEC)
