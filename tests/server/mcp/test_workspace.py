"""Who owns an MCP session: the caller that made it, and nobody else can tell it exists."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from engine.core.manager import SessionManager
from engine.errors import SessionNotFound
from engine.models import SessionSpec
from engine.server.http.auth import ANONYMOUS, PRINCIPAL
from engine.server.mcp.workspace import LOCAL, Caller, Workspace, caller_from_request


def request(principal: str | None = None) -> Request:
    """A request as the gate passes it on: with the principal of the key it checked."""
    scope: dict[str, object] = {
        "type": "http",
        "method": "POST",
        "path": "/mcp",
        "headers": [(b"host", b"127.0.0.1:8000")],
        "scheme": "http",
        "server": ("127.0.0.1", 8000),
        "query_string": b"",
        "root_path": "",
    }
    if principal is not None:
        scope[PRINCIPAL] = principal
    return Request(scope)


def test_the_caller_is_the_key_over_http_and_the_local_client_over_stdio() -> None:
    """Over HTTP the caller is the principal of the key the gate checked, the same one that owns
    sessions on the other surfaces (so quotas count across them)."""
    one = caller_from_request(request("alice"), auth=True)
    two = caller_from_request(request("bob"), auth=True)
    assert (one.owner, two.owner) == ("alice", "bob")
    assert one.api_base == "http://127.0.0.1:8000"
    assert caller_from_request(request(), auth=False).owner == ANONYMOUS
    assert caller_from_request(None, auth=True) == Caller(LOCAL)


async def test_a_session_is_seen_only_by_its_owner(manager: SessionManager) -> None:
    workspace = Workspace(manager, manager.create, SessionSpec(limits=manager.settings.limits))
    alice, bob = Caller("key:alice"), Caller("key:bob")
    session = await workspace.create(alice, {"timeout_s": 3})
    assert session.limits.timeout_s == 3
    assert workspace.get(alice, session.id) is session
    with pytest.raises(SessionNotFound) as other:
        workspace.get(bob, session.id)
    with pytest.raises(SessionNotFound) as missing:
        workspace.get(bob, "0" * 16)
    # The same answer as for an id that does not exist: ids cannot be probed.
    assert str(other.value).replace(session.id, "0" * 16) == str(missing.value)
    assert workspace.sessions(bob) == []
    with pytest.raises(SessionNotFound):
        await workspace.close(bob, session.id)
    assert manager.get(session.id) is session  # bob's attempt closed nothing
    assert workspace.sessions(alice) == [session]
    await manager.close(session.id)  # closed elsewhere (idle expiry, the session API)
    assert workspace.sessions(alice) == []
    with pytest.raises(SessionNotFound):
        workspace.get(alice, session.id)
