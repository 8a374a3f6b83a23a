"""The one Popen-shaped seam between a session and the thing that isolates it.

A `Sandbox` is one live agent process: start it, send it requests, interrupt it, kill it, learn when it
exits. Backends implement it (subprocess, docker; a scripted fake in the tests); a `SessionHost` holds
what outlives a restart (working directory, cgroup, uid) and spawns sandboxes. The session above never
knows which backend it talks to.

Every sandbox reports to one `SandboxListener`, on the event loop thread, in the order things happened:
stream bytes, frames, and finally the exit.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from engine.agent.protocol import (
    PROTOCOL_VERSION,
    FrameDecoder,
    FrameError,
    encode_frame,
    parse_frame,
)
from engine.core.process_channel import ProcessChannel
from engine.errors import FileAccessError, NotImplementedHere, SandboxStartError
from engine.models import FileInfo, Isolation, SessionSpec, SessionUsage

StreamName = Literal["stdout", "stderr"]
_STARTUP_LOG_LIMIT = 16 << 10
# Frames larger than this are parsed on a worker thread: a big display must not stall the event
# loop, which serves every other session too. Frames after it wait, so the order holds.
_OFF_LOOP_FRAME = 1 << 20


@dataclass(frozen=True)
class ExitInfo:
    """Why a sandbox stopped: its exit code (negative: killed by that signal), how many OOM kills
    its memory limit caused, and any protocol violation."""

    code: int | None
    oom_kills: int = 0
    protocol_error: str | None = None
    broken: str | None = None  # what the cell broke in the interpreter, when it was replaced

    def describe(self) -> str:
        if self.protocol_error:
            return f"the sandbox broke the agent protocol ({self.protocol_error})"
        if self.oom_kills:
            return "the sandbox ran out of memory (its memory limit was reached)"
        if self.code is None:
            return "the sandbox stopped"
        if self.code < 0 or self.code > 128:
            import signal

            number = -self.code if self.code < 0 else self.code - 128
            with contextlib.suppress(ValueError):
                return f"the interpreter was killed by {signal.Signals(number).name}"
            return f"the interpreter was killed by signal {number}"
        return f"the interpreter exited with status {self.code}"


class SandboxListener(Protocol):
    def on_stream(self, name: StreamName, data: bytes) -> None: ...
    def on_frame(self, frame: dict[str, Any]) -> None: ...
    def on_exit(self, info: ExitInfo) -> None: ...


class Sandbox(abc.ABC):
    """One agent process behind some isolation. Subclasses feed `_stream_received`,
    `_frames_received` and `_exited` from their transport; this base class turns that into the
    hello handshake and listener calls."""

    def __init__(self) -> None:
        self.listener: SandboxListener | None = None
        self._decoder = FrameDecoder()
        self._hello: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._staged: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._exit: asyncio.Future[ExitInfo] = asyncio.get_running_loop().create_future()
        self._startup_log = bytearray()
        self._killing = False
        # The one termination of this sandbox, once started (by `kill`, or by a protocol
        # violation): its process tree may outlive the exit the agent's death reports.
        self._terminating: asyncio.Task[None] | None = None
        self._protocol_error: str | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._parsing = False  # a big frame is being parsed off the loop
        self._held_frames: list[bytes] = []  # frame data that arrived meanwhile, in order
        self._held_bytes = 0
        self._held_exit: ExitInfo | None = None

    @property
    def max_frame(self) -> int:
        return self._decoder._max_frame

    @max_frame.setter
    def max_frame(self, limit: int) -> None:
        """The largest frame the agent may send (the session sets it from its output budget)."""
        self._decoder._max_frame = limit

    # -- the seam ------------------------------------------------------------------------------
    @abc.abstractmethod
    def send_bytes(self, data: bytes) -> None:
        """Queue bytes for the agent's request channel; never blocks."""

    @abc.abstractmethod
    def interrupt(self) -> None:
        """Deliver SIGINT to the agent (KeyboardInterrupt in the running cell)."""

    @abc.abstractmethod
    async def _terminate(self) -> None:
        """Destroy every process of the sandbox; return once that is certain."""

    # -- shared behaviour ----------------------------------------------------------------------
    def send(self, message: dict[str, Any]) -> None:
        self.send_bytes(encode_frame(message))

    async def wait_ready(self, timeout: float) -> dict[str, Any]:
        """Wait for the agent's hello: the sandbox is ready for requests."""
        hello = await self._wait_startup(self._hello, timeout)
        if hello.get("protocol") != PROTOCOL_VERSION:
            await self.kill()
            raise SandboxStartError(
                f"the sandbox speaks agent protocol {hello.get('protocol')!r}, "
                f"this engine speaks {PROTOCOL_VERSION}"
            )
        return hello

    async def wait_staged(self, timeout: float) -> None:
        """Wait until a staged sandbox is built and waits for its `specialize` request."""
        await self._wait_startup(self._staged, timeout)

    async def _wait_startup(
        self, milestone: asyncio.Future[dict[str, Any]], timeout: float
    ) -> dict[str, Any]:
        either: list[asyncio.Future[Any]] = [milestone, self._exit]
        try:
            async with asyncio.timeout(timeout):  # asyncio.wait never cancels what it waits for
                await asyncio.wait(either, return_when="FIRST_COMPLETED")
        except TimeoutError:
            await self.kill()
            raise SandboxStartError(f"the sandbox did not start within {timeout:.0f} s") from None
        if not milestone.done():
            raise SandboxStartError(self._startup_failure())
        return milestone.result()

    async def kill(self) -> ExitInfo:
        """Destroy the sandbox; returns once its exit is known and its termination complete, so
        a replacement started next (in the same cgroup, on the same workdir) is not swept with it.
        A termination already under way (a protocol violation started one) is waited for: the
        agent's death is reported before its sweep has finished."""
        self._killing = True
        if not self._exit.done():
            self._start_terminating()
        if self._terminating is not None:
            await asyncio.shield(self._terminating)
        return await asyncio.shield(self._exit)

    def _start_terminating(self) -> None:
        if self._terminating is None:
            self._terminating = asyncio.get_running_loop().create_task(self._terminate())

    async def wait(self) -> ExitInfo:
        return await asyncio.shield(self._exit)

    @property
    def alive(self) -> bool:
        return not self._exit.done()

    def _startup_failure(self) -> str:
        log = self._startup_log.decode("utf-8", "replace").strip()
        info = self._exit.result() if self._exit.done() else None
        import json

        for line in log.splitlines():
            with contextlib.suppress(ValueError, AttributeError):
                message = json.loads(line).get("lci_setup_error")
                if message:
                    return f"the sandbox could not be set up: {message}"
        reason = info.describe() if info else "the sandbox stopped"
        return f"{reason} before the agent started" + (f": {log[-2000:]}" if log else "")

    def _stream_received(self, name: StreamName, data: bytes) -> None:
        if not self._hello.done():
            room = _STARTUP_LOG_LIMIT - len(self._startup_log)
            self._startup_log += data[: max(room, 0)]
            return
        if self.listener is not None:
            self.listener.on_stream(name, data)

    def _frames_received(self, data: bytes) -> None:
        """Decode frames; a malformed one means the sandbox cannot be trusted to continue."""
        if self._parsing:
            self._held_frames.append(data)
            self._held_bytes += len(data)
            if self._held_bytes > 2 * self.max_frame:
                self._pause_reading(True)  # the session's byte budget: the pipe holds the rest
            return
        try:
            bodies = self._decoder.feed_raw(data)
        except FrameError as exc:
            self._protocol_violation(str(exc))
            return
        self._dispatch_bodies(bodies)

    def _dispatch_bodies(self, bodies: list[bytes]) -> None:
        for index, body in enumerate(bodies):
            if self._protocol_error:
                return
            if len(body) > _OFF_LOOP_FRAME:
                self._parsing = True
                self._background(self._parse_off_loop(body, bodies[index + 1 :]))
                return
            try:
                frame = parse_frame(body)
            except FrameError as exc:
                self._protocol_violation(str(exc))
                return
            self._dispatch(frame)

    async def _parse_off_loop(self, body: bytes, rest: list[bytes]) -> None:
        try:
            frame = await asyncio.to_thread(parse_frame, body)
        except FrameError as exc:
            self._parsing = False
            self._protocol_violation(str(exc))
            return
        self._parsing = False
        self._dispatch(frame)
        self._dispatch_bodies(rest)
        held, self._held_frames, self._held_bytes = self._held_frames, [], 0
        self._pause_reading(False)
        for data in held:
            self._frames_received(data)
        if not self._parsing and self._held_exit is not None:
            self._exited(self._held_exit)

    def _pause_reading(self, paused: bool) -> None:  # noqa: B027 - optional for backends
        """Stop (or resume) reading the agent's frames; backends that can, do."""

    def _dispatch(self, frame: dict[str, Any]) -> None:
        if frame["type"] == "hello" and not self._hello.done():
            self._hello.set_result(frame)
        elif frame["type"] == "staged" and not self._hello.done() and not self._staged.done():
            self._staged.set_result(frame)
        elif frame["type"] == "stream":
            name = frame.get("name")
            if name in ("stdout", "stderr") and isinstance(frame.get("data"), str):
                self._stream_received(name, frame["data"].encode("latin-1", "replace"))
        elif self.listener is not None:
            self.listener.on_frame(frame)

    def _background(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run `coro` as a task this sandbox keeps a reference to (the loop keeps only weak ones)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _protocol_violation(self, detail: str) -> None:
        self._protocol_error = detail
        self._start_terminating()

    def _exited(self, info: ExitInfo) -> None:
        if self._exit.done():
            return
        if self._parsing:  # frames before the exit are still being parsed: they come first
            self._held_exit = info
            return
        if self._protocol_error:
            info = ExitInfo(
                info.code, oom_kills=info.oom_kills, protocol_error=self._protocol_error
            )
        self._exit.set_result(info)
        if self.listener is not None:
            self.listener.on_exit(info)


class SessionHost(abc.ABC):
    """A session's resources that survive sandbox restarts, and the factory of its sandboxes."""

    isolation: Isolation
    sandbox_workdir: str
    # How the backend started its first sandbox (a label of the session start time histogram):
    # pool, forkserver, cold (subprocess), docker_pool, docker_cold.
    start_path: str = "cold"

    @abc.abstractmethod
    async def spawn(self) -> Sandbox:
        """Start a sandbox and return it once its agent said hello."""

    @abc.abstractmethod
    async def write_file(self, path: str, data: bytes) -> None: ...

    @abc.abstractmethod
    async def read_file(self, path: str, max_bytes: int) -> bytes: ...

    @abc.abstractmethod
    async def list_files(self) -> list[FileInfo]: ...

    async def delete_file(self, path: str) -> None:
        raise FileAccessError("this backend cannot delete files")

    async def open_processes(self) -> ProcessChannel:
        """Start the process service in the running sandbox (see `process_channel.py`)."""
        raise NotImplementedHere("this backend cannot run commands beside the interpreter")

    async def tree_op(self, op: str, path: str, args: dict[str, Any]) -> Any:
        """One of the workdir's tree operations (`engine/agent/tree.py`: stat, ls, mkdir, remove,
        move, annotate) on a workdir-relative, checked `path`; returns its plain result."""
        raise FileAccessError("this backend cannot manage directories")

    async def storage_lost(self) -> str | None:
        """Why the session's working directory is gone, if it is (None while it is there).
        Asked before a sandbox is replaced, again once the replacement runs (it may have gone
        meanwhile), and when a file operation fails."""
        return None

    async def usage(self) -> SessionUsage | None:
        """What the session's sandbox uses now (CPU, memory, disk, network); None when this
        backend cannot measure it. Must be cheap: it is asked for on every scrape."""
        return None

    @abc.abstractmethod
    async def release(self) -> None:
        """Free everything; called once, after the last sandbox was killed."""


class Backend(Protocol):
    """What the manager needs of a backend. A backend may also have `async start()`, for background
    warm-up (pools, fork servers); the manager calls it once, right after construction."""

    async def open(self, session_id: str, spec: SessionSpec) -> SessionHost: ...
    async def close(self) -> None: ...
