"""Commands beside the interpreter, over HTTP: shell commands and terminals in a session's sandbox.

POST   /v1/sessions/{id}/commands               run one: the CommandResult once it ends; with
                                                `background`, its CommandInfo at once; with
                                                `stream`, SSE events stdout/stderr/pty as they
                                                come, then `result` (or `error`)
GET    /v1/sessions/{id}/commands               the running commands
GET    /v1/sessions/{id}/commands/{pid}         one: what it wrote so far, or how it ended
GET    /v1/sessions/{id}/commands/{pid}/events  SSE from now until it ends (reconnect)
POST   /v1/sessions/{id}/commands/{pid}/stdin   input (text, or base64 bytes), optionally EOF
POST   /v1/sessions/{id}/commands/{pid}/signal  a signal to its process group
POST   /v1/sessions/{id}/commands/{pid}/resize  its terminal's size
DELETE /v1/sessions/{id}/commands/{pid}         kill it
WS     /v1/sessions/{id}/pty                    an interactive shell on a terminal (see `pty.py`)
"""

from __future__ import annotations

import base64
import binascii
import codecs
import json
import signal
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from engine.command_models import CommandInfo, CommandRequest, CommandResult, PtySize
from engine.core.commands import Command, CommandEnd, CommandOutput
from engine.errors import BadParameter, LCIError
from engine.server.http.errors import PlainError, error_body, status_for
from engine.server.http.openapi import SSE_EVENT, errors
from engine.server.http.sse import Piece, named_event, respond, until_disconnected
from engine.server.runtime.state import Owner, State

router = APIRouter(prefix="/v1/sessions/{session_id}/commands", tags=["Commands"])
_COMMON = (400, 401, 404, 413, 500)
_STREAMED: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The CommandResult (or CommandInfo in the background), or SSE events "
        "ending with `result` when streaming",
        "content": {"text/event-stream": {"schema": SSE_EVENT}},
    }
}


class RunCommand(CommandRequest):
    stream: bool = Field(False, description="Stream its output as server-sent events.")


class CommandList(BaseModel):
    commands: list[CommandInfo]


class StdinBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data: str = Field("", max_length=4 << 20, description="Text to write to its stdin.")
    data_base64: str | None = Field(None, max_length=6 << 20, description="Or bytes, in base64.")
    eof: bool = Field(False, description="Close its stdin after this input.")


class SignalBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    signal: str | int = Field("SIGTERM", description="A name (SIGTERM, SIGINT, ...) or number.")


def _command(state: State, owner: Owner, session_id: str, pid: int) -> Command:
    return state.runner.owned(session_id, owner).commands.find(pid=pid)


@router.post(
    "",
    response_model=CommandResult | CommandInfo,
    operation_id="run_command",
    responses={**_STREAMED, **errors(PlainError, 409, 429, *_COMMON)},
)
async def run_command(
    session_id: str, body: RunCommand, request: Request, state: State, owner: Owner
) -> Response:
    """Run a command in the session's sandbox, beside its interpreter: as the same user, in the
    same working directory, limits and network. A program that cannot start is a 400; a command
    that fails is a result with its exit code."""
    session = state.runner.owned(session_id, owner)
    command = await session.commands.start(CommandRequest(**body.model_dump(exclude={"stream"})))
    if body.stream:
        owned = not body.background  # a foreground command does not outlive its request
        return await respond(request, _stream(command, owned), state.options.heartbeat_s)
    if body.background:
        return _json(command.info(), 201)
    try:
        result = await until_disconnected(request, command.wait())
    finally:
        if command.running:  # the client went away: it does not outlive the request
            command.signal(signal.SIGKILL)
    return _json(result)


@router.get(
    "",
    response_model=CommandList,
    operation_id="list_commands",
    responses=errors(PlainError, *_COMMON),
)
async def list_commands(session_id: str, state: State, owner: Owner) -> CommandList:
    commands = state.runner.owned(session_id, owner).commands.list()
    return CommandList(commands=[c.info() for c in commands])


@router.get(
    "/{pid}",
    response_model=CommandResult,
    operation_id="get_command",
    responses=errors(PlainError, *_COMMON),
)
async def get_command(session_id: str, pid: int, state: State, owner: Owner) -> CommandResult:
    return _command(state, owner, session_id, pid).result()


@router.get(
    "/{pid}/events",
    operation_id="command_events",
    responses={**_STREAMED, **errors(PlainError, *_COMMON)},
)
async def command_events(
    session_id: str, pid: int, request: Request, state: State, owner: Owner
) -> Response:
    """Its output from now on as SSE events, then `result`; the command keeps running if the
    client goes away."""
    command = _command(state, owner, session_id, pid)
    return await respond(
        request, _stream(command, owned=False, replay=False), state.options.heartbeat_s
    )


@router.post(
    "/{pid}/stdin",
    status_code=204,
    operation_id="send_command_stdin",
    responses=errors(PlainError, *_COMMON),
)
async def send_stdin(
    session_id: str, pid: int, body: StdinBody, state: State, owner: Owner
) -> Response:
    command = _command(state, owner, session_id, pid)
    data = body.data.encode()
    if body.data_base64 is not None:
        try:
            data += base64.b64decode(body.data_base64, validate=True)
        except binascii.Error:
            raise BadParameter("data_base64 is not valid base64", "data_base64") from None
    if data:
        command.send_stdin(data)
    if body.eof:
        command.close_stdin()
    return Response(status_code=204)


@router.post(
    "/{pid}/signal",
    status_code=204,
    operation_id="signal_command",
    responses=errors(PlainError, *_COMMON),
)
async def signal_command(
    session_id: str, pid: int, body: SignalBody, state: State, owner: Owner
) -> Response:
    _command(state, owner, session_id, pid).signal(signal_number(body.signal))
    return Response(status_code=204)


@router.post(
    "/{pid}/resize",
    status_code=204,
    operation_id="resize_command",
    responses=errors(PlainError, *_COMMON),
)
async def resize_command(
    session_id: str, pid: int, body: PtySize, state: State, owner: Owner
) -> Response:
    _command(state, owner, session_id, pid).resize(body)
    return Response(status_code=204)


@router.delete(
    "/{pid}",
    response_model=CommandResult,
    operation_id="kill_command",
    responses=errors(PlainError, *_COMMON),
)
async def kill_command(session_id: str, pid: int, state: State, owner: Owner) -> CommandResult:
    """Kill it (SIGKILL to its process group) and return how it ended."""
    command = _command(state, owner, session_id, pid)
    command.signal(signal.SIGKILL)
    return await command.wait()


def signal_number(value: str | int) -> int:
    if isinstance(value, int):
        number = value
    else:
        name = value.upper() if value.upper().startswith("SIG") else "SIG" + value.upper()
        try:
            number = int(signal.Signals[name])
        except KeyError:
            raise BadParameter(f"unknown signal {value!r}", "signal") from None
    if number not in {int(s) for s in signal.Signals}:
        raise BadParameter(f"unknown signal {value!r}", "signal")
    return number


async def _stream(command: Command, owned: bool, replay: bool = True) -> AsyncIterator[Piece]:
    """Its output as SSE events (text, decoded per stream), from its first byte (`replay`: what
    it wrote before the stream began is sent first) or from now, then its result. A stream that
    started a foreground command kills it when the client goes away (`owned`)."""
    decoders = {
        name: codecs.getincrementaldecoder("utf-8")("replace")
        for name in ("stdout", "stderr", "pty")
    }
    yield ": started\n\n"
    try:
        async for event in command.events(replay=replay):
            if isinstance(event, CommandOutput):
                decoder = decoders.setdefault(
                    event.name, codecs.getincrementaldecoder("utf-8")("replace")
                )
                text = decoder.decode(event.data)
                if text:
                    yield named_event(event.name, json.dumps({"data": text}))
            elif isinstance(event, CommandEnd):
                yield named_event("result", command.result().model_dump_json())
    except LCIError as exc:
        body = error_body("plain", exc.code, exc.message, status_for(exc.code))
        yield named_event("error", json.dumps(body))
    finally:
        if owned and command.running:
            command.signal(signal.SIGKILL)


def _json(model: BaseModel, status: int = 200) -> Response:
    return Response(model.model_dump_json(), status_code=status, media_type="application/json")
