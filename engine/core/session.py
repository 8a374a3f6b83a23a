"""A session: one live interpreter, one execution at a time, and the timeout ladder.

    starting -> idle <-> busy -> idle        (completed, error, interrupted: state kept)
                         busy -> (restart) -> idle   (killed, crashed: state lost, files kept)
                         any  -> broken      (a restart failed; the next execute tries again)
                         any  -> closed

Timeout ladder: at the deadline the cell gets SIGINT (KeyboardInterrupt, state survives); if it has
not finished after the grace period, every process of the sandbox is killed and a fresh interpreter
started. A cancelled `execute` (the client went away) and `interrupt()` run the same ladder at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, NoReturn, TypeVar, Unpack

from engine import observe
from engine.callbacks import ItemCallback, OutputCallbackArgs, OutputCallbacks
from engine.core.commands import CommandService
from engine.core.execution import execution_of, str_dict
from engine.core.output import DISPLAY_BUDGET_FACTOR, frame_limit
from engine.core.running_cell import RunningCell
from engine.core.sandbox import ExitInfo, Sandbox, SessionHost, StreamName
from engine.core.session_files import SessionFiles
from engine.core.snapshots import SessionSnapshots
from engine.errors import SandboxError, SessionBusy, SessionClosed, SessionLost
from engine.models import (
    BackendName,
    DisplayOutput,
    Execution,
    Limits,
    Outcome,
    SessionInfo,
    SessionState,
    SessionUsage,
)

T = TypeVar("T")


# A global cap on cells running at once (see `capacity.Capacity.execution`).
ExecutionSlots = Callable[[], AbstractAsyncContextManager[None]]


class Session(SessionFiles, SessionSnapshots):
    def __init__(
        self,
        session_id: str,
        backend: BackendName,
        host: SessionHost,
        limits: Limits,
        interrupt_grace_s: float,
        slots: ExecutionSlots | None = None,
    ) -> None:
        self.id = session_id
        self.owner: str | None = None  # the API key's identity that made it, when keys are used
        self.surface = ""  # the API it was made through (a label of metrics)
        self.usage: SessionUsage | None = None  # the last measurement (see `measure`)
        self._slots = slots
        self.backend = backend
        self.limits = limits
        self._host = host
        self._grace = interrupt_grace_s
        self._sandbox: Sandbox | None = None
        self._run: RunningCell | None = None
        self._lock = asyncio.Lock()
        self.state = SessionState.STARTING
        self.created_at = self.last_used_at = time.time()
        self.executions = 0
        self.restarts = 0
        self.lost: str | None = None  # why the session cannot go on (see SessionLost)
        self._commands: CommandService | None = None
        self._init_snapshots()

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        await self._replace_sandbox()
        self.state = SessionState.IDLE

    async def _replace_sandbox(self) -> None:
        old, self._sandbox = self._sandbox, None
        if old is not None:
            await old.kill()
        try:
            sandbox = await self._host.spawn()
        except BaseException:
            if self.state is not SessionState.CLOSED:
                self.state = SessionState.BROKEN
            raise
        if self.state is SessionState.CLOSED:  # closed while it started: it must not outlive us
            await sandbox.kill()
            raise SessionClosed(f"session {self.id} is closed")
        sandbox.listener = self
        sandbox.max_frame = frame_limit(self.limits.output_bytes)
        self._sandbox = sandbox

    async def close(self) -> None:
        if self.state is SessionState.CLOSED:
            return
        self.state = SessionState.CLOSED
        if self._commands is not None:
            await self._commands.close()
        if self._sandbox is not None:
            await self._sandbox.kill()
        await self._host.release()

    @property
    def commands(self) -> CommandService:
        """Shell commands and terminals beside the interpreter, in the same sandbox."""
        if self._commands is None:
            limits, opener = self.limits, self._host.open_processes
            self._commands = CommandService(opener, limits.output_bytes, limits.timeout_s)
        return self._commands

    @property
    def start_path(self) -> str:
        """How its sandbox was started: pool, forkserver, cold, docker_pool, docker_cold."""
        return self._host.start_path

    async def measure(self) -> SessionUsage | None:
        """Measure what the sandbox uses now (kept in `usage`, shown in `info`); None when the
        backend cannot tell or the session is closed."""
        if self.state is SessionState.CLOSED:
            return self.usage
        usage = await self._host.usage()
        if usage is not None and self.usage is not None:
            peak = max(usage.memory_peak_bytes or 0, self.usage.memory_peak_bytes or 0)
            usage = usage.model_copy(update={"memory_peak_bytes": peak or None})
        self.usage = usage or self.usage
        return self.usage

    def info(self) -> SessionInfo:
        return SessionInfo(
            id=self.id,
            backend=self.backend,
            state=self.state,
            limits=self.limits,
            isolation=self._host.isolation,
            workdir=self._host.sandbox_workdir,
            created_at=self.created_at,
            last_used_at=self.last_used_at,
            executions=self.executions,
            restarts=self.restarts,
            usage=self.usage,
        )

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    async def interrupt(self) -> bool:
        """Interrupt the running cell: KeyboardInterrupt in it, state kept; if it does not stop
        within the grace period the interpreter is restarted. False when nothing was running."""
        run, sandbox = self._run, self._sandbox
        if run is None or run.ended or run.poked or sandbox is None:
            return False
        if sandbox.alive:
            sandbox.interrupt()
        run.poke()
        return True

    async def restart(self) -> None:
        """A fresh interpreter (variables lost, files kept); a running cell ends `killed`."""
        self._check_open()
        run, sandbox = self._run, self._sandbox
        if run is not None and not run.ended and sandbox is not None:
            run.killed = True
            run.poke()
            await sandbox.kill()  # the ladder of that execution starts the fresh interpreter
        async with self._lock:
            self._check_open()
            if run is None or self._sandbox is None or not self._sandbox.alive:
                await self._recover("requested")

    # -- execution -----------------------------------------------------------------------------
    async def execute(
        self,
        code: str,
        *,
        timeout_s: float | None = None,
        wait: bool = False,
        **callbacks: Unpack[OutputCallbackArgs],
    ) -> Execution:
        """Run one cell. User errors, timeouts and crashes are reported in the returned Execution;
        this raises only for session-level problems (closed, busy, sandbox cannot start).
        `on_output` sees every output item as it happens; the per-kind callbacks see theirs."""
        return await self.execute_with(
            code, OutputCallbacks(**callbacks), timeout_s=timeout_s, wait=wait
        )

    async def execute_with(
        self,
        code: str,
        callbacks: OutputCallbacks,
        *,
        timeout_s: float | None = None,
        wait: bool = False,
    ) -> Execution:
        """`execute` with its output callbacks as one object (what wrappers pass on)."""
        self._check_open()
        if self._lock.locked() and not wait:
            raise SessionBusy(f"session {self.id} is already running an execution")
        async with self._lock:
            self._check_open()  # it may have been closed while this call waited
            # A sandbox that died since the last cell (killed from outside, out of memory while
            # idle) is replaced now; the cell then runs in a fresh interpreter and must say so.
            recovered = self._sandbox is None or not self._sandbox.alive
            if recovered:
                await self._recover("died_idle")
            self.state = SessionState.BUSY
            try:
                async with self._slots() if self._slots else contextlib.nullcontext():
                    execution = await self._observed(code, timeout_s, callbacks)
                if recovered:
                    execution = execution.model_copy(update={"state_preserved": False})
            finally:
                self.last_used_at = time.time()
                self.executions += 1
                if self.state is SessionState.BUSY:
                    self.state = SessionState.IDLE
        return callbacks.finished(execution)

    async def _observed(
        self, code: str, timeout_s: float | None, callbacks: OutputCallbacks
    ) -> Execution:
        """`_execute`, timed and in a span, its outcome told to the observer."""
        started = time.perf_counter()
        with observe.span("execution", session_id=self.id, backend=self.backend.value) as span:
            execution = await self._execute(
                code, timeout_s or self.limits.timeout_s, callbacks.item_callback()
            )
            if span is not None:
                span.set_attribute("lci.outcome", execution.outcome.value)
        elapsed = time.perf_counter() - started
        observe.get().execution_finished(self.backend.value, execution.outcome.value, elapsed)
        outcome, ms = execution.outcome.value, round(elapsed * 1000, 2)
        observe.audit("execution", session_id=self.id, outcome=outcome, duration_ms=ms)
        return execution

    async def _recover(self, why: str) -> None:
        # A fresh interpreter keeps the files; when they are gone too, the session is lost.
        if reason := await self._host.storage_lost():
            self._lose(reason)
        self.restarts += 1
        observe.get().sandbox_restarted(self.backend.value, why)
        await self._replace_sandbox()
        # Asked again once the new sandbox holds the workdir, which may have gone while it started
        # (a docker keeper stops a moment after the daemon connection it hangs on broke).
        try:
            if reason := await self._host.storage_lost():
                self._lose(reason)
        except BaseException:  # not known to have the files: it must run no cell
            assert self._sandbox is not None
            await asyncio.shield(self._sandbox.kill())
            raise
        self.state = SessionState.IDLE

    async def _execute(
        self, code: str, timeout: float, on_output: ItemCallback | None
    ) -> Execution:
        sandbox = self._sandbox
        assert sandbox is not None
        limits = self.limits
        if timeout != limits.timeout_s:
            limits = limits.model_copy(update={"timeout_s": timeout})
        run = self._run = RunningCell(f"{self.id[:8]}-{self.executions}", limits, on_output)
        sandbox.send(
            {
                "type": "execute",
                "id": run.id,
                "code": code,
                "cpu_s": limits.effective_cpu_s,
                "max_display_bytes": limits.output_bytes * DISPLAY_BUDGET_FACTOR,
                "max_text_bytes": limits.output_bytes,
                "max_frame_bytes": frame_limit(limits.output_bytes),
            }
        )
        try:
            outcome, exit_info = await self._ladder(sandbox, run, timeout)
            broken = run.frame.get("broken") if run.frame else None
            if broken:
                # The cell broke the interpreter's own machinery: it must not serve another cell.
                outcome = Outcome.CRASHED
                exit_info = await self._kill_and_restart(sandbox, "broken")
                exit_info = ExitInfo(exit_info.code, broken=str(broken)[:200])
        except asyncio.CancelledError:
            await asyncio.shield(self._abort(sandbox, run))
            raise
        finally:
            self._run = None
        return execution_of(run, outcome, exit_info, self.id, self.executions + 1)

    async def _ladder(
        self, sandbox: Sandbox, run: RunningCell, timeout: float
    ) -> tuple[Outcome | None, ExitInfo | None]:
        """Wait for the cell; interrupt it at the deadline, kill it after the grace period.
        Returns (None, None) when the cell finished by itself."""
        if await run.wait(timeout):
            return (Outcome.INTERRUPTED if run.poked else None), None
        if sandbox.alive and not run.killed:
            if not run.poked:  # the deadline; interrupt() already sent the signal itself
                sandbox.interrupt()
            if await run.wait(self._grace):
                return Outcome.INTERRUPTED, None
        outcome = Outcome.KILLED if sandbox.alive or run.killed else Outcome.CRASHED
        why = "requested" if run.killed else "timeout" if sandbox.alive else "crashed"
        return outcome, await self._kill_and_restart(sandbox, why)

    async def _abort(self, sandbox: Sandbox, run: RunningCell) -> None:
        if not sandbox.alive or run.frame is not None:
            return
        sandbox.interrupt()
        if not await run.wait(self._grace) and sandbox.alive:
            await self._kill_and_restart(sandbox, "abandoned")

    async def _kill_and_restart(self, sandbox: Sandbox, why: str) -> ExitInfo:
        """Kill the sandbox and start a fresh one. `why`: timeout, requested, broken, abandoned
        (the client went away), crashed (it had died already; an OOM kill is told as oom)."""
        if sandbox.alive:
            observe.get().sandbox_killed(self.backend.value, why)
        info = await sandbox.kill()
        if why == "crashed" and info.oom_kills:
            why = "oom"
        if self.state is SessionState.CLOSED:  # closing killed it: nothing to restart for
            return info
        # On failure the state is BROKEN (the next execute retries) or CLOSED (closed meanwhile).
        with contextlib.suppress(SandboxError, SessionClosed, SessionLost):
            await self._recover(why)
        return info

    # -- sandbox events (SandboxListener) ------------------------------------------------------
    def on_stream(self, name: StreamName, data: bytes) -> None:
        if self._run is not None:
            self._run.output.feed(name, data)

    def on_frame(self, frame: dict[str, Any]) -> None:
        if frame["type"] == "reply":
            self._on_reply(frame)  # a snapshot request's (engine/core/snapshots.py)
            return
        run = self._run
        if run is None or frame.get("id") != run.id:
            return  # a stray frame (for an execution that was already abandoned)
        # Output and displays share the agent's one channel, so they arrive in the order they
        # happened: nothing to reorder here.
        if frame["type"] == "display" and isinstance(frame.get("data"), dict):
            run.output.add_display(DisplayOutput(data=str_dict(frame["data"])))
            if isinstance(frame.get("omitted"), int) and frame["omitted"] > 0:
                run.output.omitted += frame["omitted"]
        elif frame["type"] == "done":
            run.end(frame)

    def on_exit(self, info: ExitInfo) -> None:
        self._fail_replies(info.code)
        if self._run is not None:
            self._run.end(None)

    # -- files (the operations themselves: SessionFiles) --------------------------------------
    async def _on_host(self, operation: Callable[..., Awaitable[T]], *args: Any) -> T:
        self._check_open()
        try:
            return await operation(*args)
        except SandboxError:
            if reason := await self._host.storage_lost():
                self._lose(reason)
            raise

    def _lose(self, reason: str) -> NoReturn:
        if self.lost is None:
            observe.get().session_lost(self.backend.value, self.surface)
        self.lost = reason
        self.state = SessionState.BROKEN
        raise SessionLost.of(self.id, reason)

    def _check_open(self) -> None:
        if self.state is SessionState.CLOSED:
            raise SessionClosed(f"session {self.id} is closed")
        if self.lost is not None:
            raise SessionLost.of(self.id, self.lost)
