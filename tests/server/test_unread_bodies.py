"""A client without a credential cannot make a keyed server read a body. The attack: announce a
large body and send it slowly (or never); a server that buffers it before checking who is asking
holds a connection, memory and up to `body_timeout_s` for each such stranger. Every route answers
from the headers alone: lci's own, `/mcp`, and the E2B sandbox routes (where the credential is the
sandbox's token, which the gate must check itself)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.server.conftest import API_KEY
from tests.server.helpers import LciServer

ANNOUNCED = 200_000  # below every body limit of the shared server: only the credential can refuse


@pytest.fixture
def sandbox(server: LciServer) -> Iterator[dict[str, Any]]:
    reply = httpx.post(
        server.url + "/v2/sandboxes",
        json={"templateID": "base", "timeout": 120},
        headers={"X-API-Key": API_KEY},
    )
    assert reply.status_code == 201, reply.text
    body: dict[str, Any] = reply.json()
    yield body
    httpx.delete(f"{server.url}/sandboxes/{body['sandboxID']}", headers={"X-API-Key": API_KEY})


def _status_without_a_body(server: LciServer, path: str, headers: dict[str, str]) -> int:
    """The status the server answers after only the headers of a POST announcing a large body;
    fails if it waits for the body instead."""
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {ANNOUNCED}"]
    lines += ["Content-Type: application/json", *(f"{k}: {v}" for k, v in headers.items())]
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n{").encode())
        try:
            head = sock.recv(4096)
        except TimeoutError:
            pytest.fail(f"POST {path} {headers}: the server waits for the body of a stranger")
    return int(head.split(b" ", 2)[1])


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/v1/sessions", {}, 401),
        ("/v1/files", {"Authorization": "Bearer wrong"}, 401),
        ("/mcp", {}, 401),
        ("/health", {}, 405),  # open, but it takes no body
        ("/execute", {"E2b-Sandbox-Id": "nope"}, 502),
        ("/files", {"E2b-Sandbox-Id": "nope", "X-API-Key": API_KEY}, 502),
    ],
)
def test_no_body_is_read_before_the_caller_is_known(
    server: LciServer, path: str, headers: dict[str, str], status: int
) -> None:
    assert _status_without_a_body(server, path, headers) == status


@pytest.mark.parametrize("token", [None, "wrong", API_KEY])
def test_a_sandbox_route_checks_the_token_before_the_body(
    server: LciServer, sandbox: dict[str, Any], token: str | None
) -> None:
    headers = {"E2b-Sandbox-Id": sandbox["sandboxID"]}
    if token is not None:
        headers["X-Access-Token"] = token
    assert _status_without_a_body(server, "/execute", headers) == 401
    assert _status_without_a_body(server, "/files?path=/x", headers) == 401
    # the right token still gets its body read, and its code run
    ok = httpx.post(
        server.url + "/execute",
        json={"code": "6 * 7"},
        headers={
            "E2b-Sandbox-Id": sandbox["sandboxID"],
            "X-Access-Token": sandbox["envdAccessToken"],
        },
    )
    assert ok.status_code == 200 and "42" in ok.text
