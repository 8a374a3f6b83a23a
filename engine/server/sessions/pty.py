"""An interactive terminal in a session's sandbox, over a WebSocket.

    WS /v1/sessions/{id}/pty?cols=80&rows=24[&cmd=...]

The server starts a login shell (or `cmd`, run by the shell) on a terminal of that size and says
`{"type": "started", "pid": N}`. Then binary messages are the terminal's bytes both ways; text
messages from the client are JSON controls: `{"type": "input", "data": "ls\\n"}`,
`{"type": "resize", "cols": 120, "rows": 40}`, `{"type": "signal", "signal": "SIGINT"}`. When the
shell exits the server says `{"type": "exit", "exit_code": N}` and closes; a client that closes
first ends the shell. The handshake is checked like any request (Host, Origin, API key).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from engine.command_models import CommandRequest, PtySize
from engine.core.commands import Command, CommandEnd, CommandOutput
from engine.errors import LCIError
from engine.server.http.auth import ANONYMOUS, PRINCIPAL
from engine.server.runtime.state import ServerState
from engine.server.sessions.commands import signal_number

router = APIRouter()
_POLICY_VIOLATION, _UNAVAILABLE = 1008, 1011


@router.websocket("/v1/sessions/{session_id}/pty")
async def terminal(
    websocket: WebSocket, session_id: str, cols: int = 80, rows: int = 24, cmd: str | None = None
) -> None:
    state: ServerState = websocket.app.state.lci
    owner = websocket.scope.get(PRINCIPAL, ANONYMOUS)
    try:
        size = PtySize(cols=cols, rows=rows)
        session = state.runner.owned(session_id, owner)
        request = CommandRequest(
            cmd=cmd or "exec /bin/bash -i -l",
            pty=size,
            background=True,
            env={"TERM": "xterm-256color"},
        )
        command = await session.commands.start(request)
    except (LCIError, ValueError) as exc:
        await websocket.close(_POLICY_VIOLATION, reason=str(exc)[:120])
        return
    await websocket.accept()
    await websocket.send_text(json.dumps({"type": "started", "pid": command.pid}))
    output = asyncio.ensure_future(_pump(websocket, command))
    try:
        await _serve_input(websocket, command, output)
    finally:
        if command.running:
            command.signal(signal.SIGKILL)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(output, 5)


async def _pump(websocket: WebSocket, command: Command) -> None:
    async for event in command.events(replay=True):
        if isinstance(event, CommandOutput):
            await websocket.send_bytes(event.data)
        elif isinstance(event, CommandEnd):
            end = {"type": "exit", "exit_code": event.exit_code, "error": event.error}
            await websocket.send_text(json.dumps(end))
            await websocket.close()


async def _serve_input(
    websocket: WebSocket, command: Command, output: asyncio.Future[None]
) -> None:
    while not output.done():
        receiving: asyncio.Future[Any] = asyncio.ensure_future(websocket.receive())
        racing: set[asyncio.Future[Any]] = {receiving, output}
        await asyncio.wait(racing, return_when=asyncio.FIRST_COMPLETED)
        if not receiving.done():
            receiving.cancel()
            return
        message = receiving.result()
        if message["type"] == "websocket.disconnect":
            return
        try:
            if message.get("bytes"):
                command.send_stdin(message["bytes"])
            elif message.get("text"):
                _control(command, json.loads(message["text"]))
        except (LCIError, ValueError, TypeError, KeyError) as exc:
            with contextlib.suppress(WebSocketDisconnect, RuntimeError):
                await websocket.send_text(json.dumps({"type": "error", "message": str(exc)}))


def _control(command: Command, control: dict[str, Any]) -> None:
    kind = control.get("type")
    if kind == "input":
        command.send_stdin(str(control["data"]).encode())
    elif kind == "resize":
        command.resize(PtySize(cols=int(control["cols"]), rows=int(control["rows"])))
    elif kind == "signal":
        command.signal(signal_number(control.get("signal", "SIGINT")))
    else:
        raise ValueError(f"unknown control {kind!r}: input, resize or signal")
