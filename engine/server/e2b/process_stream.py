"""The event stream of envd's Start and Connect calls, from one command's events.

    {"event": {"start": {"pid": N}}}
    {"event": {"data": {"stdout" | "stderr" | "pty": BASE64}}}
    {"event": {"keepalive": {}}}                 after `Keepalive-Ping-Interval` s without data
    {"event": {"end": {"exitCode", "exited", "status", "error"?}}}
    end of stream {}, or {"error": {"code": "deadline_exceeded"}} once the call's deadline passed

The end event says what Go's `os/exec` (envd) says: `exit status N` (the error too when N is not
0), or `signal: killed` with exit code -1 and `exited` false. A command that ended because its
sandbox stopped under it ends with exit code -1 and the reason as its error, unless the sandbox
is gone (killed, expired): then the connection is dropped instead, as when an E2B sandbox dies.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import signal
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request

from engine.core.commands import Command, CommandEnd, CommandEvent
from engine.errors import SandboxNotFound, SandboxNotRunning
from engine.server.e2b import connect
from engine.server.e2b.registry import E2BSandbox
from engine.server.e2b.state import sandboxes
from engine.server.http.abort import abort
from engine.server.runtime.state import get_state

DEFAULT_KEEPALIVE_S = 50.0  # the SDKs ask for this one
MIN_KEEPALIVE_S = 1.0
_CHUNK = 32 << 10  # as envd chunks its pipes' output


async def events(
    request: Request, sandbox: E2BSandbox, command: Command, *, replay: bool
) -> AsyncIterator[bytes]:
    """The stream's envelopes; with `replay`, the command's output so far comes first (Start: the
    command may have written before the stream subscribed)."""
    interval = _keepalive(request)
    loop = asyncio.get_running_loop()
    timeout = connect.timeout_s(request)
    deadline = loop.time() + timeout if timeout is not None else None
    queue: asyncio.Queue[CommandEvent] = asyncio.Queue()
    pump = asyncio.ensure_future(_pump(command, replay, queue))
    try:
        yield _event({"start": {"pid": command.pid}})
        while True:
            left = deadline - loop.time() if deadline is not None else interval
            if left <= 0:
                yield connect.deadline_exceeded(f"process {command.pid}")
                return
            try:
                event = await asyncio.wait_for(queue.get(), min(interval, left))
            except TimeoutError:
                if deadline is None or deadline > loop.time():
                    yield _event({"keepalive": {}})
                continue
            if not isinstance(event, CommandEnd):
                for at in range(0, len(event.data), _CHUNK):
                    chunk = base64.b64encode(event.data[at : at + _CHUNK]).decode()
                    yield _event({"data": {event.name: chunk}})
                continue
            if event.exit_code is None and _gone(request, sandbox):
                return  # the connection is dropped: the sandbox died under the command
            yield _event({"end": end_event(event)})
            yield connect.end_stream()
            return
    finally:
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pump


async def _pump(command: Command, replay: bool, queue: asyncio.Queue[CommandEvent]) -> None:
    async for event in command.events(replay=replay):
        queue.put_nowait(event)


def end_event(end: CommandEnd) -> dict[str, Any]:
    code = end.exit_code
    if code is None:
        return {"exitCode": -1, "exited": False, "status": "unknown", "error": end.error or ""}
    if code < 0:
        status = f"signal: {_signal_name(-code)}"
        return {"exitCode": -1, "exited": False, "status": status, "error": status}
    event: dict[str, Any] = {"exitCode": code, "exited": True, "status": f"exit status {code}"}
    if code:
        event["error"] = event["status"]
    return event


def _signal_name(number: int) -> str:
    """Go's names for signals: `killed`, `terminated`, `interrupt`..."""
    try:
        return (signal.strsignal(number) or f"signal {number}").lower()
    except ValueError:
        return f"signal {number}"


def _event(event: dict[str, Any]) -> bytes:
    return connect.envelope({"event": event})


def _keepalive(request: Request) -> float:
    try:
        seconds = float(request.headers.get("keepalive-ping-interval", DEFAULT_KEEPALIVE_S))
    except ValueError:
        seconds = DEFAULT_KEEPALIVE_S
    return max(seconds, MIN_KEEPALIVE_S)


def _gone(request: Request, sandbox: E2BSandbox) -> bool:
    """Whether the sandbox is gone; if so, drop the connection (True when it could)."""
    try:
        sandboxes(get_state(request)).get(sandbox.id)
    except (SandboxNotFound, SandboxNotRunning):
        return abort(request.scope)
    return False
