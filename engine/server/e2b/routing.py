"""How a request reaches one E2B sandbox, and who may send it.

E2B's SDKs send every sandbox-addressed request (code interpreter `/execute`, `/contexts`, envd
`/files`, `/health`, connect-rpc) to `E2B_SANDBOX_URL` with an `E2b-Sandbox-Id` header; the path
alone does not say it is meant for a sandbox (`/health` is also lci's own). `SandboxRouting` moves
every request that carries the header under `PREFIX`, where only the sandbox routes live, so such
a request can reach nothing else. The gate delegates `PREFIX` to `authorize` (before it reads the
body), and every route there depends on `sandbox_of`, which checks again: the sandbox must exist, and the request must carry its token (`X-Access-Token`,
or `E2B-Traffic-Access-Token` on the code-interpreter calls that send only that one).

Control-plane paths under `/v1` (`/v1/sandboxes...`, `/v1/v2/sandboxes...`) and sandbox-addressed
paths under `/v1` lose that prefix first: `E2B_API_URL=http://host:8000/v1` works as well.

The SDKs' debug mode (`E2B_DEBUG=true`) never calls the control plane and addresses a sandbox
named `debug_sandbox_id` without any token: lci starts that one on first use, and only when it
runs without an API key (there is nothing to check it against).
"""

from __future__ import annotations

import secrets
from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import Depends, Request
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from engine.errors import SandboxNotFound, SandboxNotRunning, Unauthorized
from engine.models import SessionSpec
from engine.server.e2b.registry import MAX_TIMEOUT_S, E2BSandbox
from engine.server.e2b.signing import is_signed, signed_sandbox
from engine.server.e2b.state import sandboxes
from engine.server.http.auth import ANONYMOUS
from engine.server.runtime.state import ServerState, get_state

PREFIX = "/e2b-sandbox"
SANDBOX_HEADER = "e2b-sandbox-id"
DEBUG_SANDBOX_ID = "debug_sandbox_id"
_TOKEN_HEADERS = ("x-access-token", "e2b-traffic-access-token")
# `E2B_API_URL` (or `E2B_SANDBOX_URL`) set to the server's OpenAI-style base URL, ending in `/v1`:
# the SDKs append E2B's paths to it. No other surface has routes under these, and envd's paths
# never start with `/v1`, so the prefix is dropped rather than the setup refused.
V1 = "/v1"
CONTROL_PLANE = ("/sandboxes", "/v2/sandboxes")


class SandboxRouting:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            sandbox_addressed = SANDBOX_HEADER in Headers(scope=scope)
            if path.startswith(V1 + "/") and (sandbox_addressed or _control_plane(path[len(V1) :])):
                path = path[len(V1) :]
                scope = {**scope, "path": path, "raw_path": path.encode()}
            signed = is_signed(path, _query(scope))
            if sandbox_addressed or signed:
                raw: bytes = scope.get("raw_path") or path.encode()
                scope = {**scope, "path": PREFIX + path, "raw_path": PREFIX.encode() + raw}
            elif path == PREFIX or path.startswith(PREFIX + "/"):
                # Not addressed to a sandbox: it must not reach the sandbox routes either.
                scope = {**scope, "path": "/not-found" + path, "raw_path": b"/not-found"}
        await self.app(scope, receive, send)


def _query(scope: Scope) -> dict[str, str]:
    return dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))


def _control_plane(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in CONTROL_PLANE)


def authorize(scope: Scope) -> str:
    """The gate's check of a sandbox-addressed request, before its body is read: the principal that
    owns the addressed sandbox, once the request's token is checked."""
    state: ServerState = scope["app"].state.lci
    query = _query(scope)
    if SANDBOX_HEADER not in Headers(scope=scope) and "signature" in query:
        return signed_sandbox(sandboxes(state).running(), scope["method"], query).owner
    sandbox = _addressed(state, Headers(scope=scope))
    return ANONYMOUS if sandbox is None else sandbox.owner


async def sandbox_of(request: Request) -> E2BSandbox:
    """The sandbox a data-plane request addresses, once its token (or signature) is checked."""
    query = dict(request.query_params)
    if SANDBOX_HEADER not in request.headers and "signature" in query:
        registry = sandboxes(get_state(request))
        return signed_sandbox(registry.running(), request.method, query)
    sandbox = _addressed(get_state(request), request.headers)
    return sandbox if sandbox is not None else await _debug_sandbox(request)


def _addressed(state: ServerState, headers: Headers) -> E2BSandbox | None:
    """The addressed sandbox if the request carries its token; None for the debug sandbox not
    started yet (only without keys); SandboxNotRunning or Unauthorized otherwise."""
    sandbox_id = headers.get(SANDBOX_HEADER, "")
    try:
        sandbox = sandboxes(state).get(sandbox_id)
    except SandboxNotFound:
        if sandbox_id != DEBUG_SANDBOX_ID or _keyed(state):
            raise SandboxNotRunning(f"The sandbox {sandbox_id} was not found") from None
        return None
    if sandbox_id == DEBUG_SANDBOX_ID and not _keyed(state):
        return sandbox
    presented = [headers.get(name, "") for name in _TOKEN_HEADERS]
    if not any(secrets.compare_digest(t.encode(), sandbox.token.encode()) for t in presented):
        raise Unauthorized(f"missing or invalid access token for sandbox {sandbox_id}")
    return sandbox


async def _debug_sandbox(request: Request) -> E2BSandbox:
    state = get_state(request)
    spec = SessionSpec(backend=state.settings.backend, limits=state.settings.limits)
    async with sandboxes(state).debug_lock:
        try:
            return sandboxes(state).get(DEBUG_SANDBOX_ID)
        except SandboxNotFound:
            return await sandboxes(state).create(
                spec,
                template="debug",
                metadata={},
                timeout_s=MAX_TIMEOUT_S,  # debug mode never sets one
                owner=ANONYMOUS,
                sandbox_id=DEBUG_SANDBOX_ID,
            )


def _keyed(state: ServerState) -> bool:
    return bool(state.settings.api_key or state.settings.api_key_file)


Sandbox = Annotated[E2BSandbox, Depends(sandbox_of)]
