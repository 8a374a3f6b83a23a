"""Docker sessions with the network do not reach each other: they sit on a bridge of their own with
inter-container traffic off, not on docker's default bridge. Only refusals are tested."""

from __future__ import annotations

import ast

import docker

from engine.core.manager import SessionManager
from engine.models import BackendName, SessionSpec
from tests.conftest import TEST_LIMITS
from tests.docker.conftest import containers_of

LISTEN = """
import socket, threading
server = socket.socket()
server.bind(('0.0.0.0', 8765))
server.listen()
threading.Thread(target=lambda: [server.accept() for _ in range(10)], daemon=True).start()
'listening'
"""
REACH = """
import errno, socket
sock = socket.socket()
sock.settimeout(3)
try:
    sock.connect((ADDRESS, 8765))
    outcome = 'connected'
except OSError as exc:
    outcome = errno.errorcode.get(exc.errno, type(exc).__name__)
outcome
"""


async def test_network_sessions_cannot_reach_each_other(
    docker_client: docker.DockerClient, docker_manager: SessionManager
) -> None:
    spec = SessionSpec(
        backend=BackendName.DOCKER, limits=TEST_LIMITS.model_copy(update={"network": True})
    )
    first, second = await docker_manager.create(spec), await docker_manager.create(spec)
    assert (await second.execute(LISTEN)).result_text == "'listening'"
    (container,) = containers_of(docker_client, second)
    container.reload()
    networks = container.attrs["NetworkSettings"]["Networks"]
    assert "bridge" not in networks, list(networks)
    (address,) = [n["IPAddress"] for n in networks.values()]
    # The listener itself answers (so a refusal below is the isolation, not a dead listener).
    assert (await second.execute(REACH.replace("ADDRESS", "'127.0.0.1'"))).result_text == (
        "'connected'"
    )
    reached = await first.execute(REACH.replace("ADDRESS", repr(address)))
    assert reached.error is None, reached.error
    assert ast.literal_eval(reached.result_text or "''") != "connected"
