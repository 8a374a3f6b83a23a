"""A subprocess sandbox with `network=True` has a network namespace of its own behind slirp4netns:
it must not reach the host's loopback services (lci serve among them), the host's addresses,
link-local/metadata or private ranges, nor another network sandbox, and a port it binds is not a
port of the host. Only refusals are tested: nothing here sends a packet off this machine."""

from __future__ import annotations

import ast
import socket
from collections.abc import Iterator

import pytest

from engine.config import Settings
from engine.core.backends.subprocess.backend import SubprocessBackend
from engine.core.backends.subprocess.probe import host_addresses
from engine.core.manager import SessionManager
from engine.models import BackendName, SessionSpec
from tests.conftest import IN_CI, TEST_LIMITS

PROBE = """
import errno, socket
def reach(address, port):
    sock = socket.socket()
    sock.settimeout(3)
    try:
        sock.connect((address, port))
        return 'connected'
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc))
    finally:
        sock.close()
{address: reach(address, port) for address, port in TARGETS}
"""
LISTEN = """
import socket
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(('0.0.0.0', PORT))
server.listen()
server.getsockname()[1]
"""
ROUTES = """
routes = [line.split() for line in open('/proc/net/route').read().splitlines()[1:]]
[r[0] for r in routes if r[1] == '00000000' and r[0] != '*'], open('/etc/resolv.conf').read()
"""


@pytest.fixture
def host_service() -> Iterator[int]:
    """A service on the host's loopback, as `lci serve` is by default."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_a_network_sandbox_reaches_neither_host_nor_other_sandboxes(
    settings: Settings, host_service: int
) -> None:
    settings.subprocess_warm_pool = 0
    async with SessionManager(settings) as manager:
        backend = await manager.backend(BackendName.SUBPROCESS)
        assert isinstance(backend, SubprocessBackend)
        if not backend.probe.namespaces or backend.probe.slirp4netns is None:
            if IN_CI:
                pytest.fail("CI must run network sandboxes (slirp4netns and namespaces)")
            pytest.skip("slirp4netns or namespaces are not available here")
        spec = SessionSpec(limits=TEST_LIMITS.model_copy(update={"network": True}))
        first, second = await manager.create(spec), await manager.create(spec)
        assert first.info().isolation.network_namespace
        port = _free_port()
        bound = await second.execute(LISTEN.replace("PORT", str(port)))
        assert bound.result_text == str(port), bound.error
        # The port the second sandbox bound is not the host's.
        with (
            pytest.raises(ConnectionRefusedError),
            socket.create_connection(("127.0.0.1", port), timeout=3),
        ):
            pass
        targets = [
            ("127.0.0.1", host_service),  # its own loopback, not the host's
            ("10.0.2.2", host_service),  # slirp4netns's alias of the host loopback: disabled
            ("169.254.169.254", 80),  # cloud metadata
            ("10.0.2.100", port),  # where the other sandbox listens, in its own namespace
            ("127.0.0.1", port),
            *((address, host_service) for address in host_addresses()),
        ]
        probe = PROBE.replace("TARGETS", repr(targets))
        reached = await first.execute(probe)
        assert reached.error is None, reached.error
        outcome = ast.literal_eval(reached.result_text or "{}")
        assert "connected" not in outcome.values(), outcome
        assert outcome["169.254.169.254"] == "EHOSTUNREACH"
        for address in host_addresses():
            assert outcome[address] == "EHOSTUNREACH", outcome
        # The way out exists: a default route through slirp4netns, and its DNS forwarder.
        routes = await first.execute(ROUTES)
        assert routes.result_text == "(['tap0'], 'nameserver 10.0.2.3\\n')", routes
