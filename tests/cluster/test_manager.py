"""The cluster session manager in-process against the real two-node cluster."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import docker
import pytest
import ray

from engine.cluster import ClusterSessionManager
from engine.config import Settings
from engine.errors import BadParameter, CapacityExceeded, SessionNotFound
from engine.models import BackendName, Limits, SessionSpec
from tests.cluster.conftest import LocalCluster
from tests.conftest import require_docker

LIMITS = Limits(timeout_s=10, memory_mb=256, max_procs=32, disk_mb=32)


pytestmark = pytest.mark.cluster


def settings(cluster: LocalCluster, **more: Any) -> Settings:
    return Settings(ray_address=cluster.address, limits=LIMITS, ray_call_timeout_s=10, **more)


async def test_sessions_spread_over_both_nodes_and_keep_state(
    local_cluster: LocalCluster,
) -> None:
    manager = ClusterSessionManager(settings(local_cluster))
    first = await manager.create()
    second = await manager.create()
    try:
        nodes = {first.info().node_id, second.info().node_id}
        assert nodes == {local_cluster.head_id, local_cluster.worker_id}
        assert (await first.execute("x = 41")).outcome.value == "completed"
        execution = await first.execute("x + 1")
        assert execution.result_text == "42"
        # Another manager (another replica) finds it by id, with its state.
        other = ClusterSessionManager(settings(local_cluster))
        again = other.get(first.id)
        assert (await again.execute("x * 2")).result_text == "82"
        assert {s.id for s in other.list()} >= {first.id, second.id}
    finally:
        await manager.close(first.id)
        await manager.close(second.id)
    with pytest.raises(SessionNotFound):
        ClusterSessionManager(settings(local_cluster)).get(first.id)


async def test_an_idle_session_ends_with_its_actor(local_cluster: LocalCluster) -> None:
    """Expiry runs on the session's node: the session closes, and the actor (which would hold
    its node's `lci` unit for ever) ends itself."""
    manager = ClusterSessionManager(settings(local_cluster, idle_timeout_s=1.0))
    session = await manager.create()
    assert session.id in ray.util.list_named_actors()
    deadline = time.monotonic() + 20
    while session.id in ray.util.list_named_actors() and time.monotonic() < deadline:
        await asyncio.sleep(0.3)
    assert session.id not in ray.util.list_named_actors()
    with pytest.raises(SessionNotFound):
        await session.execute("1")  # the replica's cached handle: gone, not lost
    with pytest.raises(SessionNotFound):
        ClusterSessionManager(settings(local_cluster)).get(session.id)


async def test_a_session_closed_through_another_replica_is_not_found_here(
    local_cluster: LocalCluster,
) -> None:
    """A replica deleting a session closes it in its actor, then kills the actor. In between,
    another replica that holds the handle must find it gone (404), not closed (409)."""
    manager = ClusterSessionManager(settings(local_cluster))
    session = await manager.create()
    try:
        other = ClusterSessionManager(settings(local_cluster))
        held = other.get(session.id)
        assert (await held.execute("1 + 1")).result_text == "2"
        await session.handle.close.remote()  # the delete's first step; the actor lives on
        with pytest.raises(SessionNotFound):
            await held.execute("1")
        with pytest.raises(SessionNotFound):
            other.get(session.id)  # forgotten, and its actor says it is not started
    finally:
        await manager.close(session.id)


async def test_an_owners_quota_counts_its_sessions_on_every_node(
    local_cluster: LocalCluster,
) -> None:
    manager = ClusterSessionManager(settings(local_cluster, max_sessions_per_owner=1))
    mine = await manager.create(owner="alice")
    try:
        other_replica = ClusterSessionManager(settings(local_cluster, max_sessions_per_owner=1))
        with pytest.raises(CapacityExceeded, match="quota"):
            await other_replica.create(owner="alice")
        theirs = await other_replica.create(owner="bob")
        await other_replica.close(theirs.id)
    finally:
        await manager.close(mine.id)


async def test_network_is_refused_on_a_cluster(local_cluster: LocalCluster) -> None:
    manager = ClusterSessionManager(settings(local_cluster))
    spec_limits = LIMITS.model_copy(update={"network": True})
    with pytest.raises(BadParameter, match="Ray's ports"):
        await manager.create(SessionSpec(limits=spec_limits))


@pytest.mark.docker
async def test_a_docker_session_runs_on_a_node(local_cluster: LocalCluster) -> None:
    """The actor runs whichever backend the session asks for on its node; its container goes
    when the session is closed."""
    require_docker(Settings())
    client = docker.from_env(timeout=30)
    try:
        manager = ClusterSessionManager(settings(local_cluster))
        session = await manager.create(SessionSpec(backend=BackendName.DOCKER, limits=LIMITS))
        try:
            assert session.info().node_id in {local_cluster.head_id, local_cluster.worker_id}
            execution = await session.execute("import socket; y = 6; y * 7")
            assert execution.result_text == "42"
            mine = {"label": f"lci.session={session.id}"}
            assert client.containers.list(all=True, filters=mine)
            assert (await session.execute("y")).result_text == "6"
        finally:
            await manager.close(session.id)
        assert client.containers.list(all=True, filters=mine) == []
    finally:
        client.close()
