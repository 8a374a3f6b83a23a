"""Every request's identity and account: its id (the client's `x-request-id` when it sent a sane one,
else the trace's id when tracing, else a new one), returned in the `x-request-id` response header;
the surface it went to; a span around it; and, when it ends, its status and duration told to the
observer and written to the access log (`lci.access`, one event per request).

Plain ASGI, outside the gate (so refusals are counted too) and inside the surfaces' routing
middleware (so the surface is read from the path the request is routed by)."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engine import observe

REQUEST_ID = "x-request-id"
_SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
access_log = logging.getLogger("lci.access")


class Telemetry:
    def __init__(self, app: ASGIApp, *, surface_of: Callable[[str], str]) -> None:
        self.app = app
        self.surface_of = surface_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        surface = self.surface_of(scope["path"])
        status = 500  # what a request that never started its response counts as
        tokens = (observe.surface.set(surface), observe.owner.set(""))
        with observe.span("http.request", method=scope["method"], path=scope["path"]) as span:
            request_id = _request_id(scope)
            id_token = observe.request_id.set(request_id)
            header = (REQUEST_ID.encode(), request_id.encode())

            async def send_with_id(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                    message["headers"] = [*message.get("headers", ()), header]
                await send(message)

            try:
                await self.app(scope, receive, send_with_id)
            finally:
                elapsed = time.perf_counter() - started
                observe.get().request_finished(surface, status, elapsed)
                if span is not None:
                    span.set_attribute("http.status_code", status)
                if access_log.isEnabledFor(logging.INFO):
                    _log(scope, status, elapsed)
                observe.request_id.reset(id_token)
        observe.surface.reset(tokens[0])
        observe.owner.reset(tokens[1])


def _request_id(scope: Scope) -> str:
    given = Headers(scope=scope).get(REQUEST_ID)
    if given and _SANE_ID.fullmatch(given):
        return given
    return observe.trace_id() or uuid.uuid4().hex


def _log(scope: Scope, status: int, elapsed: float) -> None:
    fields = {
        "method": scope["method"],
        "path": scope["path"],
        "status": status,
        "duration_ms": round(elapsed * 1000, 2),
    }
    access_log.info("%s %s %d", scope["method"], scope["path"], status, extra={"fields": fields})
