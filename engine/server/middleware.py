"""The gate every request passes before routing: bearer-token auth and the request body size limit.

It is plain ASGI so it can answer before FastAPI reads anything: an oversized body is refused from
its Content-Length at once, and a chunked body is read only up to the limit. Refusals use the error
shape of the surface the request was sent to.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engine.server.errors import error_body, status_for, surface_of

# Reachable without a key: liveness and the API description hold nothing secret.
OPEN_PATHS = frozenset({"/health", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})


class Gate:
    def __init__(
        self, app: ASGIApp, *, api_key: str | None, body_limit: Callable[[str], int]
    ) -> None:
        self.app = app
        self.api_key = api_key
        self.body_limit = body_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        headers = Headers(scope=scope)
        if self.api_key and path not in OPEN_PATHS and not self._authorized(headers):
            await _refuse(send, path, "unauthorized", "missing or invalid API key (Bearer token)")
            return
        limit = self.body_limit(path)
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await _refuse(send, path, "payload_too_large", f"request body exceeds {limit} bytes")
            return
        if scope["method"] in ("POST", "PUT", "PATCH"):
            body = await _read_body(receive, limit)
            if body is None:
                await _refuse(
                    send, path, "payload_too_large", f"request body exceeds {limit} bytes"
                )
                return
            receive = _replay(body, receive)
        await self.app(scope, receive, send)

    def _authorized(self, headers: Headers) -> bool:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        assert self.api_key is not None
        return scheme.lower() == "bearer" and secrets.compare_digest(
            token.strip().encode(), self.api_key.encode()
        )


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
    if code == "unauthorized":
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
