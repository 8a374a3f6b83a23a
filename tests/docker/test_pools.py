"""Warm pools are bounded: one pool per image id however a session spells the image, at most
`docker_max_pools` pools, the pools of images nobody uses any more closed."""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from engine.config import Settings
from engine.core.backends.docker.backend import DockerBackend
from engine.core.manager import SessionManager
from engine.models import BackendName, SessionSpec
from tests.conftest import TEST_LIMITS, require_docker
from tests.docker.conftest import labelled


@pytest.fixture
def pool_settings(tmp_path: Path) -> Settings:
    settings = Settings(
        state_dir=tmp_path / "state",
        limits=TEST_LIMITS,
        interrupt_grace_s=0.5,
        docker_warm_pool=1,
        docker_max_pools=2,
        docker_pool_idle_s=0.5,
    )
    require_docker(settings)
    return settings


@pytest.fixture
def derived_images(
    docker_client: docker.DockerClient, pool_settings: Settings
) -> Iterator[list[str]]:
    """Two images with ids of their own (a label on top of the sandbox image; no network needed)."""
    tags = []
    for n in range(2):
        tag = f"lci-pooltest-{uuid.uuid4().hex[:8]}:{n}"
        dockerfile = f"FROM {pool_settings.docker_image}\nLABEL lci.pooltest={n}\n".encode()
        docker_client.images.build(fileobj=io.BytesIO(dockerfile), tag=tag, rm=True)
        tags.append(tag)
    yield tags
    for tag in tags:
        docker_client.images.remove(tag, force=True)


async def _use(manager: SessionManager, image: str) -> None:
    session = await manager.create(
        SessionSpec(backend=BackendName.DOCKER, limits=TEST_LIMITS, image=image)
    )
    assert (await session.execute("6 * 7")).result_text == "42"
    await manager.close(session.id)


async def test_six_spellings_of_one_image_are_one_pool(
    docker_client: docker.DockerClient, pool_settings: Settings
) -> None:
    image = docker_client.images.get(pool_settings.docker_image)
    alias = f"lci-alias-{uuid.uuid4().hex[:8]}:x"
    image.tag(alias)
    repository, _, tag = pool_settings.docker_image.partition(":")
    spellings = [
        pool_settings.docker_image,
        alias,
        image.id,
        image.id.removeprefix("sha256:")[:12],
        f"docker.io/library/{repository}:{tag or 'latest'}",
    ]
    if tag in ("", "latest"):
        spellings.append(repository)
    try:
        async with SessionManager(pool_settings) as manager:
            for spelling in spellings:
                await _use(manager, spelling)
            backend = await manager.backend(BackendName.DOCKER)
            assert isinstance(backend, DockerBackend)
            assert len(backend.pools) == 1
            await backend.warm_up(60)
            await asyncio.sleep(1)
            pooled = labelled(docker_client, f"lci.backend={backend.backend_id}")
            assert len(pooled) <= pool_settings.docker_warm_pool, [c.name for c in pooled]
    finally:
        docker_client.images.remove(alias)


async def test_pools_are_bounded_and_unused_ones_closed(
    docker_client: docker.DockerClient, pool_settings: Settings, derived_images: list[str]
) -> None:
    async with SessionManager(pool_settings) as manager:
        await _use(manager, pool_settings.docker_image)
        for image in derived_images:
            await _use(manager, image)
        backend = await manager.backend(BackendName.DOCKER)
        assert isinstance(backend, DockerBackend)
        assert len(backend.pools) == pool_settings.docker_max_pools
        default_id = await backend.check_image(pool_settings.docker_image)
        await asyncio.sleep(pool_settings.docker_pool_idle_s)
        assert backend.pools.close_idle(pinned=default_id) == 1  # the derived image's pool
        assert len(backend.pools) == 1
        deadline = asyncio.get_running_loop().time() + 30
        while asyncio.get_running_loop().time() < deadline:
            pooled = labelled(docker_client, f"lci.backend={backend.backend_id}")
            if len(pooled) <= pool_settings.docker_warm_pool:
                break
            await asyncio.sleep(0.5)
        assert len(pooled) <= pool_settings.docker_warm_pool, [c.name for c in pooled]
