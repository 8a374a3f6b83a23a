"""Connection-level guards against slow clients, which uvicorn lacks: it waits for a request's
headers forever, and accepts connections until the process runs out of file descriptors, so a few
hundred clients trickling partial headers starve everyone else.

`guarded_protocol` is uvicorn's h11 protocol plus:

- a header deadline: a connection whose request headers are not complete `header_timeout_s` after
  it opened (or after its previous response) is closed;
- an abort: `scope["extensions"]["lci.abort"]` drops the connection mid-response (`abort.py`);
- a connection cap: past `max_connections` the oldest connection still waiting for headers (or
  idle between requests) is closed to make room; only when every connection is serving a request
  is the new one refused.

Bodies are bounded in time by the gate (`gate.py`), idle keep-alive by uvicorn itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import struct
from collections import OrderedDict
from typing import Any, cast

from uvicorn.protocols.http.h11_impl import H11Protocol, RequestResponseCycle

from engine.server.http.abort import ABORT

_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST


def guarded_protocol(header_timeout_s: float, max_connections: int) -> type[H11Protocol]:
    """An h11 protocol class for one server (the registry of waiting connections is its own)."""
    waiting: OrderedDict[GuardedProtocol, None] = OrderedDict()  # oldest first

    class GuardedProtocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                if not waiting:
                    self._drop()  # every connection is serving a request: refuse this one
                    return
                next(iter(waiting))._drop()
            self._await_headers()

        def connection_lost(self, exc: Exception | None) -> None:
            self._headers_arrived()
            super().connection_lost(exc)

        def handle_events(self) -> None:
            super().handle_events()
            if self.cycle is not None and not self.cycle.response_complete:
                self._headers_arrived()
                scope = cast(dict[str, Any], self.cycle.scope)
                scope.setdefault("extensions", {})[ABORT] = functools.partial(
                    self._abort, self.cycle
                )

        def _abort(self, cycle: RequestResponseCycle) -> None:
            # Marked disconnected, the cycle ignores what the app still sends and does not log
            # the unfinished response as an error.
            cycle.disconnected = True
            cycle.message_event.set()
            if not self.transport.is_closing():
                # A reset, not an orderly close: what the client sees when a peer vanishes (a
                # proxy in front of a dead sandbox), an error reading rather than a body cut short.
                sock = self.transport.get_extra_info("socket")
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
                self.transport.abort()

        def on_response_complete(self) -> None:
            # Armed first: a pipelined request that is already buffered disarms it again.
            self._await_headers()
            super().on_response_complete()

        def _await_headers(self) -> None:
            self._cancel_timer()
            waiting[self] = None
            self._header_timer = self.loop.call_later(header_timeout_s, self._drop)

        def _headers_arrived(self) -> None:
            waiting.pop(self, None)
            self._cancel_timer()

        def _cancel_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _drop(self) -> None:
            self._headers_arrived()
            if not self.transport.is_closing():
                self.transport.close()

    return GuardedProtocol
