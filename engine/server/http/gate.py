"""The gate every request passes before routing: the Host/Origin check, bearer-token auth (which
also names the request's principal), and the request body's size and read time.

It is plain ASGI so it can answer before FastAPI reads anything: an oversized body is refused from
its Content-Length at once, a chunked body is read only up to the limit, and a body that trickles in
slower than `body_timeout_s` allows is answered with 408. Refusals use the error shape of the
surface the request was sent to.

The key comes as `Authorization: Bearer <key>` or, as E2B's SDKs send it, `X-API-Key: <key>`.
Paths under a `delegated` prefix carry a credential of their surface's own (E2B's sandbox-addressed
requests carry a per-sandbox token, not the key): the gate asks that surface's `Authorizer`, with
or without keys. Either way the caller is known before a byte of the body is read, so a client
without a credential cannot make the server buffer a body (up to the upload limit, for up to
`body_timeout_s`). A request to an open path without a key is passed on unread: open paths take no
body.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import anyio
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engine import observe
from engine.errors import LCIError
from engine.server.http.auth import PRINCIPAL, KeyRing
from engine.server.http.errors import error_body, status_for, surface_of
from engine.server.http.hosts import HostCheck

# Reachable without a key: liveness and the API description hold nothing secret, nor does the
# browser app's page at `/`, which loads data only through the API, with the key the user gives it.
OPEN_PATHS = frozenset(
    {"/health", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/"}
)
# ... and the documentation pages' scripts and styles (served from lci's own files: `docs.py`),
# and the browser app's (static files shipped with lci).
OPEN_PREFIXES = ("/docs/assets/", "/ui/")

# The principal a delegated request acts for, from its scope (headers and all, but not the body);
# raises an LCIError (its code picks the status) to refuse it. Called on the event loop: no I/O.
Authorizer = Callable[[Scope], str]


class Gate:
    def __init__(
        self,
        app: ASGIApp,
        *,
        keys: KeyRing | None,
        hosts: HostCheck,
        body_limit: Callable[[str], int],
        body_timeout_s: float,
        delegated: dict[str, Authorizer] | None = None,
    ) -> None:
        self.app = app
        self.keys = keys
        self.hosts = hosts
        self.body_limit = body_limit
        self.body_timeout_s = body_timeout_s
        self.delegated = delegated or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        headers = Headers(scope=scope)
        if not self.hosts.host_allowed(headers.get("host")):
            await _refuse(send, path, "forbidden_host", "this server does not answer to that Host")
            return
        if not self.hosts.origin_allowed(headers.get("origin")):
            await _refuse(send, path, "forbidden_host", "requests from that Origin are refused")
            return
        authorizer = next((a for p, a in self.delegated.items() if path.startswith(p)), None)
        if authorizer is not None:
            try:
                scope[PRINCIPAL] = authorizer(scope)
            except LCIError as refused:
                observe.audit("auth.failure", path=path, reason=refused.code)
                await _refuse(send, path, refused.code, refused.message)
                return
            observe.owner.set(observe.hash_owner(scope[PRINCIPAL]))
        elif self.keys is not None:
            principal = self._principal(headers)
            if principal is None:
                if path not in OPEN_PATHS and not path.startswith(OPEN_PREFIXES):
                    given = "authorization" in headers or "x-api-key" in headers
                    observe.audit(
                        "auth.failure", path=path, reason="invalid" if given else "missing"
                    )
                    await _refuse(
                        send, path, "unauthorized", "missing or invalid API key (Bearer token)"
                    )
                    return
                await self.app(scope, receive, send)  # unread: nothing to buffer for a stranger
                return
            scope[PRINCIPAL] = principal
            observe.owner.set(observe.hash_owner(principal))
        limit = self.body_limit(path)
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await _refuse(send, path, "payload_too_large", f"request body exceeds {limit} bytes")
            return
        if scope["method"] in ("POST", "PUT", "PATCH"):
            with anyio.move_on_after(self.body_timeout_s) as reading:
                body = await _read_body(receive, limit)
            if reading.cancelled_caught:
                await _refuse(
                    send,
                    path,
                    "request_timeout",
                    f"the request body did not arrive within {self.body_timeout_s:g} s",
                )
                return
            if body is None:
                await _refuse(
                    send, path, "payload_too_large", f"request body exceeds {limit} bytes"
                )
                return
            receive = _replay(body, receive)
        await self.app(scope, receive, send)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A WebSocket handshake passes the same Host, Origin (a page of another site must not
        open a terminal in a local session) and key checks, or is closed before it is accepted."""
        headers = Headers(scope=scope)
        refusal = None
        if not self.hosts.host_allowed(headers.get("host")):
            refusal = "this server does not answer to that Host"
        elif not self.hosts.origin_allowed(headers.get("origin")):
            refusal = "connections from that Origin are refused"
        elif self.keys is not None:
            principal = self._principal(headers)
            if principal is None:
                observe.audit("auth.failure", path=scope["path"], reason="websocket")
                refusal = "missing or invalid API key (Bearer token)"
            else:
                scope[PRINCIPAL] = principal
        if refusal is not None:
            await receive()  # the client's connect message
            await send({"type": "websocket.close", "code": 1008, "reason": refusal})
            return
        await self.app(scope, receive, send)

    def _principal(self, headers: Headers) -> str | None:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        assert self.keys is not None
        if scheme.lower() != "bearer":
            token = headers.get("x-api-key", "")
        return self.keys.identify(token.strip())


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None as soon as it grows past `limit`."""
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break  # the client went away; the app will see an empty body and a disconnect
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        parts.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(parts)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive channel that hands out the already-read body once, then the real channel (so the
    app still learns when the client disconnects)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def _refuse(send: Send, path: str, code: str, message: str) -> None:
    status = status_for(code)
    payload = json.dumps(error_body(surface_of(path), code, message, status)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(payload))]
    if code == "request_timeout":
        headers.append((b"connection", b"close"))
    if code == "unauthorized":
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
