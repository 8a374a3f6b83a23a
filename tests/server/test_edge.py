"""The server's edge against hostile clients: operator maxima on client-chosen limits, the Host and
Origin check against DNS rebinding, and slow clients (partial headers, trickled bodies)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.server.helpers import REPO, SMALL_LIMITS, FakeModel, LciServer, free_port

TIB_MB = 1 << 20


@pytest.fixture(scope="module")
def open_server(shared_fake: FakeModel) -> Iterator[LciServer]:
    """No key (the default), a low memory maximum, an allowed name, quick slow-client deadlines."""
    env = {"LCI_SERVER_HEADER_TIMEOUT_S": "1.5", "LCI_SERVER_BODY_TIMEOUT_S": "1.5"}
    args = ["--max-memory-mb", "300", "--allow-host", "lci.internal", "--max-connections", "40"]
    with LciServer(shared_fake.base_url, env=env, args=args) as running:
        yield running


# -- operator maxima ----------------------------------------------------------------------------


def test_limits_beyond_the_operators_maxima_are_refused(open_server: LciServer) -> None:
    with open_server.client() as client:
        for limits, name in (
            ({"memory_mb": TIB_MB}, "memory_mb"),
            ({"memory_mb": 512}, "memory_mb"),  # within the model's range, above --max-memory-mb
            ({"disk_mb": TIB_MB}, "disk_mb"),
            ({"output_bytes": 1 << 30}, "output_bytes"),
            ({"timeout_s": 86400}, "timeout_s"),
        ):
            reply = client.post("/v1/sessions", json={"limits": limits})
            assert reply.status_code == 400, (limits, reply.text)
            assert name in reply.json()["error"]["message"]
        assert client.get("/v1/sessions").json()["sessions"] == []
        created = client.post("/v1/sessions", json={"limits": {"memory_mb": 300}})
        assert created.status_code == 201, created.text
        sid = created.json()["id"]
        slow = client.post(f"/v1/sessions/{sid}/execute", json={"code": "1", "timeout_s": 86400})
        assert slow.status_code == 400 and "timeout_s" in slow.json()["error"]["message"]
        assert client.delete(f"/v1/sessions/{sid}").status_code == 200


def test_default_limits_beyond_the_maxima_stop_the_server_at_start() -> None:
    limits = json.dumps({**SMALL_LIMITS, "memory_mb": 4096})
    command = [sys.executable, "-m", "engine.cli", "serve", "--port", str(free_port())]
    run = subprocess.run(
        [*command, "--max-memory-mb", "1024"],
        check=False,
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "LCI_LIMITS": limits},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2 and "memory_mb" in run.stderr, run.stderr


# -- Host and Origin ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Host": "attacker.example"}, 403),
        ({"Host": "attacker.example:8000"}, 403),
        ({"Origin": "http://attacker.example"}, 403),
        ({"Origin": "null"}, 403),
        ({"Host": "localhost:1"}, 200),
        ({"Host": "lci.internal"}, 200),
        ({"Host": "[::1]:8000"}, 200),
        ({"Origin": "http://localhost:3000"}, 200),
    ],
)
def test_dns_rebinding_is_refused_without_a_key(
    open_server: LciServer, headers: dict[str, str], status: int
) -> None:
    reply = httpx.get(open_server.url + "/v1/sessions", headers=headers, timeout=30)
    assert reply.status_code == status, reply.text
    if status == 403:
        created = httpx.post(open_server.url + "/v1/sessions", headers=headers, timeout=30)
        assert created.status_code == 403
        assert created.json()["error"]["code"] == "forbidden_host"


# -- slow clients -------------------------------------------------------------------------------


def _partial(url_port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", url_port), timeout=5)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    return sock


def _closed_by_server(sock: socket.socket) -> bool:
    sock.settimeout(0.01)
    try:
        return sock.recv(1024) == b""
    except TimeoutError:
        return False
    except OSError:
        return True


def test_partial_headers_neither_pile_up_nor_starve_health(open_server: LciServer) -> None:
    socks = [_partial(open_server.port) for _ in range(120)]  # three times --max-connections
    try:
        started = time.monotonic()
        health = httpx.get(open_server.url + "/health", timeout=5)
        assert health.status_code == 200 and time.monotonic() - started < 3
        time.sleep(0.3)
        closed = sum(_closed_by_server(s) for s in socks)
        assert closed >= 120 - 40, f"only {closed} of 120 partial connections were closed"
        deadline = time.monotonic() + 5
        while not all(_closed_by_server(s) for s in socks) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert all(_closed_by_server(s) for s in socks), "headers never completed, still open"
    finally:
        for sock in socks:
            sock.close()


def test_a_trickled_body_is_cut_off(open_server: LciServer) -> None:
    with socket.create_connection(("127.0.0.1", open_server.port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n{"
        )
        reply = sock.recv(4096)
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
