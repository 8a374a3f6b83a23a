"""envd's process service (`process.Process`, connect-rpc with the JSON codec) over the sandbox's
commands (`Session.commands`, in the default context's session: one sandbox, one filesystem).

    Start        server stream: start {pid}, data {stdout|stderr|pty: base64}, keepalive, end
    Connect      the same stream for a running command, chosen by pid or tag (from now on; for
                 one that has ended, its start and end)
    List         the running commands the client started (never lci's own processes)
    SendInput    stdin or terminal input        CloseStdin   EOF on stdin
    SendSignal   SIGTERM or SIGKILL             Update       resize the terminal
    StreamInput  input as a client stream (E2B's JavaScript SDK; the Python SDK never calls it)

As envd: a command runs its `cmd` with `args` (the SDKs send `/bin/bash -l -c CMD`, or
`/bin/bash -i -l` on a terminal), in `cwd` (default E2B's home `/home/user`, the sandbox's working
directory), with the sandbox's environment variables and then the call's on top; stdin stays open
unless `stdin: false`. The call's deadline (`Connect-Timeout-Ms`, the SDKs' `timeout`) is the
command's: it is killed then (a second later, so that the client sees its own deadline pass); no
deadline, no limit. A client that goes away leaves the command running (it can connect again).
If the sandbox is killed or expires under a stream, the stream's connection is dropped, as when
an E2B sandbox dies; the SDK then finds the sandbox gone and says so.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import signal
import weakref
from collections.abc import Awaitable
from pathlib import PurePosixPath
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import ValidationError

from engine.command_models import CommandRequest, PtySize
from engine.core.commands import Command
from engine.core.session import Session
from engine.errors import BadParameter, CommandNotFound, LCIError
from engine.server.e2b import connect
from engine.server.e2b.process_stream import events
from engine.server.e2b.registry import HOME, E2BSandbox
from engine.server.e2b.routing import PREFIX, Sandbox, sandbox_of
from engine.server.e2b.state import sandboxes
from engine.server.runtime.state import State

router = APIRouter(
    prefix=PREFIX + "/process.Process", dependencies=[Depends(sandbox_of)], include_in_schema=False
)

MAX_TIMEOUT_S = 24 * 3600
KILL_WAIT_S = 2.0
# The client gives up at the call's deadline and reports a timeout; the command is killed a little
# later, so that its end never overtakes the client's own deadline.
DEADLINE_GRACE_S = 1.0
_SIGNALS = {"SIGNAL_SIGKILL": signal.SIGKILL, "SIGNAL_SIGTERM": signal.SIGTERM, 9: 9, 15: 15}
# Each command the client started, with its `ProcessConfig` as the client gave it (what List
# shows). Keyed by the command itself: gone with it.
_started: weakref.WeakKeyDictionary[Command, dict[str, Any]] = weakref.WeakKeyDictionary()


@router.post("/Start")
async def start(request: Request, sandbox: Sandbox, state: State) -> Response:
    try:
        body = await connect.message(request)
        session = sandboxes(state).session(sandbox)
        command = await session.commands.start(_command(body, sandbox, connect.timeout_s(request)))
    except LCIError as exc:
        return _stream_failed(exc)
    config = _config(body)
    _started[command] = {**config, "args": config.get("args") or [], "tag": body.get("tag")}
    return _stream(events(request, sandbox, command, replay=True))


@router.post("/Connect")
async def connect_(request: Request, sandbox: Sandbox, state: State) -> Response:
    try:
        body = await connect.message(request)
        command = _find(_session(sandbox, state), body.get("process"))
    except LCIError as exc:
        return _stream_failed(exc)
    return _stream(events(request, sandbox, command, replay=False))


@router.post("/List")
async def list_(sandbox: Sandbox, state: State) -> Response:
    return await _unary(_list(sandbox, state))


@router.post("/SendInput")
async def send_input(request: Request, sandbox: Sandbox, state: State) -> Response:
    return await _unary(_send_input(request, sandbox, state))


@router.post("/StreamInput")
async def stream_input(request: Request, sandbox: Sandbox, state: State) -> Response:
    """Every message of the client stream, in order: a `start` naming the command, then `data`."""
    try:
        command: Command | None = None
        for event in connect.unwrap(await request.body()):
            if "start" in event:
                command = _find(_session(sandbox, state), _dict(event["start"]).get("process"))
            elif "data" in event:
                if command is None:
                    raise BadParameter("input before the start event names the command", "data")
                _write(command, _dict(event["data"]).get("input"))
    except LCIError as exc:
        return _stream_failed(exc)
    return Response(connect.envelope({}) + connect.end_stream(), media_type=connect.STREAM_MEDIA)


@router.post("/SendSignal")
async def send_signal(request: Request, sandbox: Sandbox, state: State) -> Response:
    return await _unary(_send_signal(request, sandbox, state))


@router.post("/CloseStdin")
async def close_stdin(request: Request, sandbox: Sandbox, state: State) -> Response:
    return await _unary(_close_stdin(request, sandbox, state))


@router.post("/Update")
async def update(request: Request, sandbox: Sandbox, state: State) -> Response:
    return await _unary(_update(request, sandbox, state))


# -- the calls -----------------------------------------------------------------------------------
async def _list(sandbox: E2BSandbox, state: State) -> dict[str, Any]:
    processes = []
    for command in _session(sandbox, state).commands.list():
        config = _started.get(command)
        if config is not None:  # started by the client, not by lci
            info: dict[str, Any] = {"pid": command.pid, "config": _without(config, "tag")}
            if config.get("tag") is not None:
                info["tag"] = config["tag"]
            processes.append(info)
    return {"processes": processes}


async def _send_input(request: Request, sandbox: E2BSandbox, state: State) -> dict[str, Any]:
    body = await connect.message(request)
    _write(_find(_session(sandbox, state), body.get("process")), body.get("input"))
    return {}


async def _send_signal(request: Request, sandbox: E2BSandbox, state: State) -> dict[str, Any]:
    body = await connect.message(request)
    command = _find(_session(sandbox, state), body.get("process"))
    number = _SIGNALS.get(body.get("signal", ""))
    if number is None:
        raise BadParameter(f"unsupported signal {body.get('signal')!r}", "signal")
    _running(command).signal(number)
    if number == signal.SIGKILL:  # answered once it is gone: a `kill -0 PID` right after fails
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(command.ended.wait(), KILL_WAIT_S)
    return {}


async def _close_stdin(request: Request, sandbox: E2BSandbox, state: State) -> dict[str, Any]:
    body = await connect.message(request)
    command = _running(_find(_session(sandbox, state), body.get("process")))
    if command.request.pty is not None:
        raise BadParameter("a terminal has no stdin to close: send Ctrl+D (0x04) instead", "pty")
    command.close_stdin()
    return {}


async def _update(request: Request, sandbox: E2BSandbox, state: State) -> dict[str, Any]:
    body = await connect.message(request)
    command = _running(_find(_session(sandbox, state), body.get("process")))
    size = _pty(body.get("pty"))
    if size is not None:
        command.resize(size)
    return {}


# -- helpers -------------------------------------------------------------------------------------
async def _unary(call: Awaitable[dict[str, Any]]) -> Response:
    try:
        return JSONResponse(await call)
    except LCIError as exc:
        return connect.error_response(exc)


def _stream(body: Any) -> StreamingResponse:
    return StreamingResponse(body, media_type=connect.STREAM_MEDIA)


def _stream_failed(exc: LCIError) -> Response:
    return Response(connect.end_stream(exc), media_type=connect.STREAM_MEDIA)


def _session(sandbox: E2BSandbox, state: State) -> Session:
    return sandboxes(state).session(sandbox)


def _command(body: dict[str, Any], sandbox: E2BSandbox, timeout: float | None) -> CommandRequest:
    config = _config(body)
    cmd = config.get("cmd")
    if not isinstance(cmd, str) or not cmd:
        raise BadParameter("process.cmd is required", "process.cmd")
    env = {"HOME": HOME, **sandbox.envs} if sandbox.default.cwd == HOME else dict(sandbox.envs)
    env.update(_strings(config.get("envs") or {}, "process.envs"))
    pty = _pty(body.get("pty"))
    tag = body.get("tag")
    fields = {
        "cmd": cmd,
        "args": [str(a) for a in config.get("args") or []],
        "env": env,
        "cwd": _cwd(config.get("cwd"), sandbox),
        "timeout_s": min(timeout + DEADLINE_GRACE_S, MAX_TIMEOUT_S) if timeout else None,
        "stdin": bool(body.get("stdin", True)) and pty is None,  # envd: open unless told not
        "pty": pty,
        "tag": str(tag) if tag is not None else None,
        "background": True,  # no timeout but the call's deadline, as envd
    }
    try:
        return CommandRequest.model_validate(fields)
    except ValidationError as exc:
        raise BadParameter(f"invalid process: {exc.errors()[0]['msg']}", "process") from None


def _config(body: dict[str, Any]) -> dict[str, Any]:
    return _dict(body.get("process"))


def _cwd(cwd: Any, sandbox: E2BSandbox) -> str:
    """envd's resolution: none (or `~`) is the home, a relative path is under it."""
    home = PurePosixPath(sandbox.default.cwd)
    if not cwd or cwd == "~":
        return str(home)
    path = PurePosixPath(str(cwd).replace("~/", "", 1) if str(cwd).startswith("~/") else str(cwd))
    if path.is_relative_to(HOME):  # E2B's home, wherever this sandbox has it
        path = path.relative_to(HOME)
    return str(home / path)  # an absolute path stays as it is


def _pty(value: Any) -> PtySize | None:
    if value is None:
        return None
    size = _dict(_dict(value).get("size"))
    try:
        return PtySize(cols=int(size.get("cols") or 80), rows=int(size.get("rows") or 24))
    except (TypeError, ValueError) as exc:
        raise BadParameter(f"invalid terminal size: {exc}", "pty.size") from None


def _find(session: Session, selector: Any) -> Command:
    """The command a `ProcessSelector` names: a running one first (a pid may be reused), else the
    last that ended."""
    chosen = _dict(selector)
    pid, tag = chosen.get("pid"), chosen.get("tag")
    if pid is None and tag is None:
        raise BadParameter("process: give pid or tag", "process")

    def matches(command: Command) -> bool:
        if pid is not None:
            return command.pid == int(pid)
        return command.request.tag == tag

    for command in session.commands.list():
        if matches(command) and command in _started:
            return command
    found = session.commands.find(pid=int(pid) if pid is not None else None, tag=tag)
    if found not in _started:
        raise CommandNotFound(f"process with pid {pid} not found")
    return found


def _running(command: Command) -> Command:
    if not command.running:
        raise CommandNotFound(f"process with pid {command.pid} not found")
    return command


def _write(command: Command, value: Any) -> None:
    chosen = _dict(value)
    data = chosen.get("stdin", chosen.get("pty"))
    if not isinstance(data, str):
        raise BadParameter("input: give stdin or pty (base64)", "input")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadParameter(f"input is not base64: {exc}", "input") from None
    _running(command).send_stdin(raw)


def _dict(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadParameter("expected a JSON object", "body")
    return value


def _strings(value: Any, field: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise BadParameter(f"{field} must map names to strings", field)
    return {str(k): v for k, v in value.items()}


def _without(config: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k != key and v is not None}
