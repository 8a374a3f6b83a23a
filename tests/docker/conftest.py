"""Fixtures for tests against the real Docker daemon and sandbox image. Without them these tests
skip with the reason, or fail when CI=true (see tests/conftest.py)."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Iterator
from typing import Any

import docker
import pytest

from engine.config import Settings
from engine.core.manager import SessionManager
from engine.core.owners import owner_tag
from engine.core.session import Session
from engine.models import BackendName, SessionSpec
from tests.conftest import TEST_LIMITS, docker_unavailable_reason, require_docker

OWNER = owner_tag()


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    """A plain SDK client, for looking at containers the way an operator would."""
    require_docker(Settings())
    client = docker.from_env(timeout=30)
    yield client
    client.close()


@pytest.fixture(scope="session", autouse=True)
def no_leaked_containers() -> Iterator[None]:
    """After the whole run, no container or volume made by this test process is left."""
    yield
    if docker_unavailable_reason(Settings()) is not None:
        return
    client = docker.from_env(timeout=30)
    try:
        left = client.containers.list(all=True, filters={"label": f"lci.owner={OWNER}"})
        assert not left, f"containers left behind: {[c.name for c in left]}"
        volumes = client.volumes.list(filters={"label": f"lci.owner={OWNER}"})
        assert not volumes, f"volumes left behind: {[v.name for v in volumes]}"
    finally:
        client.close()


@pytest.fixture
def collect_garbage() -> Iterator[None]:
    """Collect garbage before the test ends, so objects it dropped are finalized (and any warning
    about them is attributed) within the test."""
    yield
    gc.collect()


@pytest.fixture
def docker_settings(settings: Settings) -> Settings:
    require_docker(settings)
    return settings


@pytest.fixture
async def docker_manager(docker_settings: Settings) -> AsyncIterator[SessionManager]:
    async with SessionManager(docker_settings) as manager:
        yield manager


@pytest.fixture
def make_docker_session(docker_manager: SessionManager) -> Any:
    async def make(**limit_overrides: Any) -> Session:
        limits = TEST_LIMITS.model_copy(update=limit_overrides)
        return await docker_manager.create(SessionSpec(backend=BackendName.DOCKER, limits=limits))

    return make


@pytest.fixture
async def docker_session(make_docker_session: Any) -> Session:
    session: Session = await make_docker_session()
    return session


def containers_of(client: docker.DockerClient, session: Session) -> list[Any]:
    """The sandbox containers (running or not) labelled with this session."""
    return labelled(client, f"lci.session={session.id}")


def keepers_of(client: docker.DockerClient, session: Session) -> list[Any]:
    """The keeper containers of this session: the ones holding its workdir volume."""
    return labelled(client, f"lci.session={session.id}", keepers=True)


def labelled(client: docker.DockerClient, label: str, keepers: bool = False) -> list[Any]:
    """Containers carrying `label`: the sandboxes, or (`keepers`) the keepers. Other engines on
    the machine come and go meanwhile: a container removed between listing and looking at it is
    not an error."""
    found = []
    for sparse in client.containers.list(all=True, filters={"label": label}, sparse=True):
        try:
            found.append(client.containers.get(sparse.id))
        except docker.errors.NotFound:
            continue
    return [c for c in found if (c.labels.get("lci.role") == "keeper") == keepers]


def volumes_labelled(client: docker.DockerClient, label: str) -> list[Any]:
    found: list[Any] = client.volumes.list(filters={"label": label})
    return found


def workdir_volume(container: Any) -> str:
    """The name of the volume mounted at the container's /workspace."""
    [mount] = [m for m in container.attrs["Mounts"] if m["Destination"] == "/workspace"]
    assert mount["Type"] == "volume"
    return str(mount["Name"])
