"""Commands beside the interpreter: a session's shell commands and terminals, on its process service.

`CommandService` is a session's: it opens the channel to the process service on the first command
(`SessionHost.open_processes`), starts commands on it and keeps each one's state. A `Command` fans
its output out to every subscriber (a waiting `run`, a streaming HTTP response, an E2B `connect`)
and keeps what it wrote, within the session's output limit, which the service enforces too. When
the sandbox goes (a restart, the session's end), its commands end with an error saying so, and
the next command opens a new channel.
"""

from __future__ import annotations

import asyncio
import codecs
import itertools
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from engine.agent.protocol import FrameDecoder, FrameError, encode_frame
from engine.command_models import CommandInfo, CommandRequest, CommandResult, PtySize
from engine.core.process_channel import ProcessChannel
from engine.errors import (
    BadParameter,
    CapacityExceeded,
    CommandNotFound,
    CommandStartFailed,
    LCIError,
    SandboxError,
)

ChannelOpener = Callable[[], Awaitable[ProcessChannel]]
TextCallback = Callable[[str], None]
MAX_COMMANDS = 64  # running at once per session; the sandbox's process limit holds what they start
SHELL = ("/bin/bash", "-l", "-c")
_HELLO_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class CommandOutput:
    name: str  # stdout, stderr or pty
    data: bytes


@dataclass(frozen=True)
class CommandEnd:
    exit_code: int | None
    error: str | None = None


CommandEvent = CommandOutput | CommandEnd
OutputListener = Callable[[CommandOutput], None]


def text_listener(on_stdout: TextCallback | None, on_stderr: TextCallback | None) -> OutputListener:
    """Output as text, decoded per stream (a character split across two reads arrives whole)."""
    decoders = {
        name: codecs.getincrementaldecoder("utf-8")("replace")
        for name in ("stdout", "stderr", "pty")
    }
    callbacks = {"stdout": on_stdout, "stderr": on_stderr, "pty": on_stdout}

    def listen(output: CommandOutput) -> None:
        callback = callbacks.get(output.name)
        if callback is not None:
            text = decoders[output.name].decode(output.data)
            if text:
                callback(text)

    return listen


class Command:
    """One command the process service started."""

    def __init__(self, service: CommandService, cid: str, request: CommandRequest) -> None:
        self._service = service
        self.id = cid
        self.request = request
        self.pid = 0
        self.started_at = time.time()
        self.output: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
        self.truncated = False
        self.timed_out = False
        self.end: CommandEnd | None = None
        self.ended = asyncio.Event()
        self.started: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._subscribers: list[asyncio.Queue[CommandEvent]] = []
        self.listener: OutputListener | None = None  # called with each output, from the start
        self._deadline: asyncio.TimerHandle | None = None

    @property
    def running(self) -> bool:
        return self.end is None

    def info(self) -> CommandInfo:
        request = self.request
        return CommandInfo(
            id=self.id, pid=self.pid, cmd=request.cmd, args=request.args, env=request.env,
            cwd=request.cwd, tag=request.tag, pty=request.pty is not None,
            started_at=self.started_at, running=self.running,
            exit_code=self.end.exit_code if self.end else None,
        )  # fmt: skip

    def result(self) -> CommandResult:
        end = self.end
        return CommandResult(
            id=self.id, pid=self.pid, exit_code=end.exit_code if end else None,
            stdout=self.output["stdout"].decode("utf-8", "replace"),
            stderr=self.output["stderr"].decode("utf-8", "replace"),
            timed_out=self.timed_out, truncated=self.truncated,
            error=end.error if end else None, duration_s=time.time() - self.started_at,
        )  # fmt: skip

    async def events(self, replay: bool = False) -> AsyncIterator[CommandEvent]:
        """Its events from now on, ending with its `CommandEnd`; with `replay`, first what it wrote
        so far (one `CommandOutput` per stream, as kept), taken at the moment of subscribing, so
        nothing written in between is missed or repeated."""
        backlog: list[CommandEvent] = []
        if replay:
            backlog = [CommandOutput(n, bytes(d)) for n, d in self.output.items() if d]
        if self.end is not None:
            for kept in [*backlog, self.end]:
                yield kept
            return
        queue: asyncio.Queue[CommandEvent] = asyncio.Queue()
        self._subscribers.append(queue)
        for kept in backlog:
            queue.put_nowait(kept)
        try:
            while True:
                event = await queue.get()
                yield event
                if isinstance(event, CommandEnd):
                    return
        finally:
            self._subscribers.remove(queue)

    async def wait(self) -> CommandResult:
        await self.ended.wait()
        return self.result()

    # -- control -------------------------------------------------------------------------------
    def send_stdin(self, data: bytes) -> None:
        if self.request.stdin or self.request.pty is not None:
            self._control({"type": "input", "data": data.decode("latin-1")})
        else:
            raise BadParameter("the command was started without stdin (`stdin: true` keeps it)")

    def close_stdin(self) -> None:
        self._control({"type": "close_stdin"})

    def signal(self, number: int = signal.SIGKILL) -> None:
        self._control({"type": "signal", "signal": int(number)})

    def resize(self, size: PtySize) -> None:
        if self.request.pty is None:
            raise BadParameter("the command has no terminal to resize")
        self._control({"type": "resize", "cols": size.cols, "rows": size.rows})

    def _control(self, frame: dict[str, Any]) -> None:
        if self.end is not None:
            raise CommandNotFound(f"command {self.pid or self.id} has ended")
        self._service._send({**frame, "id": self.id})

    def _arm_timeout(self, seconds: float | None) -> None:
        if seconds is not None:
            self._deadline = asyncio.get_running_loop().call_later(seconds, self._time_out)

    def _time_out(self) -> None:
        """A foreground command's deadline covers everything it started (its process group),
        even once the command itself has ended: what it left running is killed then too. A
        background command's ends with it (what it leaves behind lives on, as with envd)."""
        if self.end is None:
            self.timed_out = True
        elif self.request.background:
            return
        self._service._send({"type": "signal", "id": self.id, "signal": int(signal.SIGKILL)})

    # -- from the service ----------------------------------------------------------------------
    def _publish(self, event: CommandEvent) -> None:
        if isinstance(event, CommandOutput):
            self.output.setdefault(event.name, bytearray()).extend(event.data)
        else:
            self.end = event
            if not self.started.done():
                failure = CommandStartFailed(event.error or "the command did not start")
                self.started.set_exception(failure)
                self.started.exception()  # retrieved: a waiter may be gone
            self.ended.set()
        if self.listener is not None and isinstance(event, CommandOutput):
            self.listener(event)
        for queue in self._subscribers:
            queue.put_nowait(event)


class CommandService:
    """A session's commands; see the module docstring."""

    def __init__(self, opener: ChannelOpener, max_output: int, default_timeout_s: float) -> None:
        self._opener = opener
        self._max_output = max_output
        self._default_timeout_s = default_timeout_s
        self._channel: ProcessChannel | None = None
        self._opening: asyncio.Future[ProcessChannel] | None = None
        self._decoder = FrameDecoder()
        self._hello: asyncio.Future[None] | None = None
        self._commands: dict[str, Command] = {}
        self._ids = itertools.count(1)
        self._closed = False
        self._closing: asyncio.Future[None] | None = None

    def list(self) -> list[Command]:
        return [c for c in self._commands.values() if c.running]

    def find(self, pid: int | None = None, tag: str | None = None) -> Command:
        for command in self._commands.values():
            if (pid is not None and command.pid == pid) or (
                tag is not None and command.request.tag == tag
            ):
                return command
        raise CommandNotFound(
            f"no command with {'pid ' + str(pid) if pid is not None else 'tag ' + repr(tag)}"
        )

    async def start(
        self,
        request: CommandRequest | str,
        *,
        listener: OutputListener | None = None,
        **options: Any,
    ) -> Command:
        """Start `request` (or a command line and CommandRequest's fields as keywords); returns
        once it runs (its pid known), or raises why it could not. `listener` sees every output
        from the first byte on."""
        if isinstance(request, str):
            request = CommandRequest(cmd=request, **options)
        if len(self.list()) >= MAX_COMMANDS:
            raise CapacityExceeded(f"the session runs {MAX_COMMANDS} commands already")
        if request.tag is not None and any(c.request.tag == request.tag for c in self.list()):
            raise BadParameter(f"a running command has the tag {request.tag!r} already")
        await self._ensure_channel()
        command = Command(self, f"c{next(self._ids)}", request)
        command.listener = listener
        self._commands[command.id] = command
        argv = [request.cmd, *request.args] if request.args is not None else [*SHELL, request.cmd]
        self._send(
            {
                "type": "start", "id": command.id, "argv": argv, "env": request.env,
                "cwd": request.cwd, "stdin": request.stdin,
                "pty": request.pty.model_dump() if request.pty else None,
                "max_output": self._max_output,
            }
        )  # fmt: skip
        command.pid = await command.started
        timeout = request.timeout_s
        if timeout is None and not request.background and request.pty is None:
            timeout = self._default_timeout_s
        command._arm_timeout(timeout)
        self._forget_ended()
        return command

    async def run(
        self,
        request: CommandRequest | str,
        *,
        on_stdout: TextCallback | None = None,
        on_stderr: TextCallback | None = None,
        **options: Any,
    ) -> CommandResult:
        """Run a command to its end (see `start`); the callbacks get its output as text as it
        comes. A cancelled `run` kills the command."""
        listener = text_listener(on_stdout, on_stderr) if on_stdout or on_stderr else None
        command = await self.start(request, listener=listener, **options)
        try:
            return await command.wait()
        finally:
            if command.running:
                command.signal(signal.SIGKILL)

    async def close(self) -> None:
        self._closed = True
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.close()
        self._ended("the session is closed")

    # -- the channel ---------------------------------------------------------------------------
    async def _ensure_channel(self) -> None:
        if self._closed:
            raise LCIError("the session is closed")
        if self._channel is not None:
            return
        if self._opening is None:
            self._opening = asyncio.ensure_future(self._open())
        try:
            await asyncio.shield(self._opening)
        finally:
            if self._opening is not None and self._opening.done():
                self._opening = None

    async def _open(self) -> ProcessChannel:
        channel = await self._opener()
        self._decoder = FrameDecoder()
        self._hello = asyncio.get_running_loop().create_future()
        channel.attach(self._received, lambda reason: self._lost(channel, reason))
        try:
            async with asyncio.timeout(_HELLO_TIMEOUT_S):
                await self._hello
        except BaseException:
            await channel.close()
            raise
        if self._closed:
            await channel.close()
            raise LCIError("the session is closed")
        self._channel = channel
        return channel

    def _send(self, frame: dict[str, Any]) -> None:
        if self._channel is not None:
            self._channel.send(encode_frame(frame))

    def _received(self, data: bytes) -> None:
        try:
            frames = self._decoder.feed(data)
        except FrameError as exc:
            if self._channel is not None:
                self._closing = asyncio.ensure_future(self._channel.close())
            self._lost(self._channel, f"the process service broke its protocol ({exc})")
            return
        for frame in frames:
            self._dispatch(frame)

    def _dispatch(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        if kind == "hello" and self._hello is not None and not self._hello.done():
            self._hello.set_result(None)
            return
        command = self._commands.get(str(frame.get("id")))
        if command is None or command.end is not None:
            return
        if kind == "started" and not command.started.done():
            command.started.set_result(int(frame.get("pid", 0)))
        elif kind == "failed":
            command._publish(CommandEnd(None, str(frame.get("error", "the command did not start"))))
        elif kind == "output" and isinstance(frame.get("data"), str):
            data = frame["data"].encode("latin-1", "replace")
            command._publish(CommandOutput(str(frame.get("name", "stdout")), data))
        elif kind == "truncated":
            command.truncated = True
        elif kind == "exited":
            code = frame.get("code")
            error = "it ran past its timeout and was killed" if command.timed_out else None
            command._publish(CommandEnd(code if isinstance(code, int) else None, error))

    def _lost(self, channel: ProcessChannel | None, reason: str) -> None:
        if channel is not None and channel is not self._channel and self._channel is not None:
            return  # an old channel's late end
        self._channel = None
        if self._hello is not None and not self._hello.done():
            self._hello.set_exception(SandboxError(f"the process service did not start: {reason}"))
        self._ended(f"the sandbox stopped ({reason})")

    def _ended(self, why: str) -> None:
        for command in self._commands.values():
            if command.end is None:
                command._publish(CommandEnd(None, why))

    def _forget_ended(self, keep: int = 256) -> None:
        """Ended commands stay findable (a late `wait`, E2B's `connect`) up to `keep` of them."""
        ended = [cid for cid, c in self._commands.items() if c.end is not None]
        for cid in ended[: max(len(ended) - keep, 0)]:
            del self._commands[cid]
