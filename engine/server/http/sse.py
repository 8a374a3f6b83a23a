"""Server-sent events: the framing of each surface, and the pump that streams a response.

The pump runs what produces a stream (the tool loop and a renderer) in a task of its own and hands
its pieces to the HTTP response through a small queue. That keeps all of one request's loop in one
task, lets a quiet stream (code running) carry keep-alive comments, and makes a client that goes
away cancel the work: Starlette cancels the response when the client disconnects, and the pump then
cancels its task, which stops the model stream and interrupts the running execution.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
from fastapi import Request
from fastapi.responses import JSONResponse, StreamingResponse

T = TypeVar("T")

KEEP_ALIVE = ": keep-alive\n\n"
DONE = "data: [DONE]\n\n"
_STOP_WAIT_S = 30.0  # how long a cancelled stream may take to stop its execution


def compact_json(data: dict[str, Any]) -> str:
    """`data` as an event payload: no spaces, non-ASCII text as it is."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def data_event(payload: str) -> str:
    """Chat Completions framing (docs/conformance/common.md, stream framing): `data: <json>`."""
    return f"data: {payload}\n\n"


def named_event(name: str, payload: str) -> str:
    """Responses framing: `event: <type>` then `data: <json>`."""
    return f"event: {name}\ndata: {payload}\n\n"


@dataclass
class Rejection:
    """The stream failed before anything was sent: answer with this status and JSON body."""

    status: int
    body: dict[str, Any]

    def response(self) -> JSONResponse:
        return JSONResponse(self.body, self.status)


Piece = str | Rejection
_END: Any = object()


class Pump:
    """Runs `source` in its own task; iterate it to get its pieces, with KEEP_ALIVE whenever
    `heartbeat_s` passes without one. Stopping the iteration early (or cancelling it) cancels the
    task and waits, shielded, until it has wound down."""

    def __init__(self, source: AsyncIterator[Piece], heartbeat_s: float) -> None:
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=64)
        self._heartbeat_s = heartbeat_s
        self._task = asyncio.get_running_loop().create_task(self._produce(source))
        self._getter: asyncio.Future[Any] | None = None

    async def _produce(self, source: AsyncIterator[Piece]) -> None:
        try:
            async for piece in source:
                await self._queue.put(piece)
        except Exception as exc:  # handed to the consumer, which raises it
            await self._queue.put(exc)
        else:
            await self._queue.put(_END)  # waits for room: a full queue must not lose the end
        finally:
            aclose = getattr(source, "aclose", None)
            if aclose is not None:
                await aclose()

    async def next(self, heartbeat: bool = True) -> Piece | None:
        """The next piece, KEEP_ALIVE after a quiet `heartbeat_s`, None at the end."""
        while True:
            if self._getter is None:
                self._getter = asyncio.ensure_future(self._queue.get())
            done, _ = await asyncio.wait({self._getter}, timeout=self._heartbeat_s)
            if not done:
                if heartbeat:
                    return KEEP_ALIVE
                continue
            item, self._getter = self._getter.result(), None
            if item is _END:
                return None
            if isinstance(item, Exception):
                raise item
            return item  # type: ignore[no-any-return]

    async def stream(self, first: Piece | None = None) -> AsyncIterator[str]:
        try:
            if isinstance(first, str):
                yield first
            while (piece := await self.next()) is not None:
                if isinstance(piece, str):
                    yield piece
        finally:
            await self.stop()

    async def stop(self) -> None:
        if self._getter is not None:
            self._getter.cancel()
        self._task.cancel()
        with anyio.CancelScope(shield=True), anyio.move_on_after(_STOP_WAIT_S):
            await asyncio.wait({self._task})


SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


async def respond(
    request: Request,
    source: AsyncIterator[Piece],
    heartbeat_s: float,
    media_type: str = "text/event-stream",
) -> StreamingResponse | JSONResponse:
    """Stream `source` as SSE, unless its first piece is a Rejection: then answer with that. The
    wait for the first piece is abandoned (and the work cancelled) if the client disconnects."""
    pump = Pump(source, heartbeat_s)
    try:
        first = await until_disconnected(request, pump.next(heartbeat=False))
    except BaseException:
        await pump.stop()
        raise
    if first is None or isinstance(first, Rejection):
        await pump.stop()
        if isinstance(first, Rejection):
            return first.response()
        return StreamingResponse(iter(()), media_type=media_type, headers=SSE_HEADERS)
    return StreamingResponse(pump.stream(first), media_type=media_type, headers=SSE_HEADERS)


class ClientGone(Exception):
    """The client disconnected before the answer was ready."""


async def until_disconnected(request: Request, awaitable: Awaitable[T]) -> T:
    """Await `awaitable`, cancelling it if the client disconnects first (then ClientGone)."""
    work: asyncio.Future[T] = asyncio.ensure_future(awaitable)
    watch = asyncio.ensure_future(_disconnected(request))
    try:
        racing: set[asyncio.Future[Any]] = {work, watch}
        await asyncio.wait(racing, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
        if not work.done():
            work.cancel()
            with anyio.CancelScope(shield=True), anyio.move_on_after(_STOP_WAIT_S):
                await asyncio.wait({work})
    if work.cancelled():
        raise ClientGone("the client disconnected")
    return work.result()


async def _disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
