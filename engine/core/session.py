"""A session: one live interpreter, one execution at a time, and the timeout ladder.

    starting -> idle <-> busy -> idle        (completed, error, interrupted: state kept)
                         busy -> (restart) -> idle   (killed, crashed: state lost, files kept)
                         any  -> broken      (a restart failed; the next execute tries again)
                         any  -> closed

Timeout ladder: at the deadline the cell gets SIGINT (KeyboardInterrupt, state survives); if it has
not finished after the grace period, every process of the sandbox is killed and a fresh interpreter
started. A cancelled `execute` (the client went away) runs the same ladder at once.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from engine.core.output import ItemCallback, OutputBuffer
from engine.core.sandbox import ExitInfo, Sandbox, SessionHost, StreamName
from engine.errors import SandboxError, SessionBusy, SessionClosed
from engine.models import (
    BackendName,
    DisplayOutput,
    ErrorInfo,
    Execution,
    FileInfo,
    Limits,
    Outcome,
    ResultOutput,
    SessionInfo,
    SessionState,
)

MAX_FILE_BYTES = 256 << 20


class _Run:
    """The execution in flight: where the sandbox's events for it go."""

    def __init__(self, exec_id: str, limits: Limits, on_output: ItemCallback | None) -> None:
        self.id = exec_id
        self.output = OutputBuffer(limits.output_bytes, on_output)
        self.done: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()


class Session:
    def __init__(self, session_id: str, backend: BackendName, host: SessionHost, limits: Limits,
                 interrupt_grace_s: float) -> None:
        self.id = session_id
        self.backend = backend
        self.limits = limits
        self._host = host
        self._grace = interrupt_grace_s
        self._sandbox: Sandbox | None = None
        self._run: _Run | None = None
        self._lock = asyncio.Lock()
        self.state = SessionState.STARTING
        self.created_at = self.last_used_at = time.time()
        self.executions = 0
        self.restarts = 0

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
            self.state = SessionState.BROKEN
            raise
        sandbox.listener = self
        self._sandbox = sandbox

    async def close(self) -> None:
        if self.state is SessionState.CLOSED:
            return
        self.state = SessionState.CLOSED
        if self._sandbox is not None:
            await self._sandbox.kill()
        await self._host.release()

    def info(self) -> SessionInfo:
        return SessionInfo(
            id=self.id, backend=self.backend, state=self.state, limits=self.limits,
            isolation=self._host.isolation, workdir=self._host.sandbox_workdir,
            created_at=self.created_at, last_used_at=self.last_used_at,
            executions=self.executions, restarts=self.restarts,
        )

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    # -- execution -----------------------------------------------------------------------------
    async def execute(self, code: str, *, timeout_s: float | None = None, wait: bool = False,
                      on_output: ItemCallback | None = None) -> Execution:
        """Run one cell. User errors, timeouts and crashes are reported in the returned Execution;
        this raises only for session-level problems (closed, busy, sandbox cannot start)."""
        if self.state is SessionState.CLOSED:
            raise SessionClosed(f"session {self.id} is closed")
        if self._lock.locked() and not wait:
            raise SessionBusy(f"session {self.id} is already running an execution")
        async with self._lock:
            if self.state is SessionState.CLOSED:
                raise SessionClosed(f"session {self.id} is closed")
            if self._sandbox is None or not self._sandbox.alive:
                await self._recover()
            self.state = SessionState.BUSY
            try:
                return await self._execute(code, timeout_s or self.limits.timeout_s, on_output)
            finally:
                self.last_used_at = time.time()
                self.executions += 1
                if self.state is SessionState.BUSY:
                    self.state = SessionState.IDLE

    async def _recover(self) -> None:
        self.restarts += 1
        await self._replace_sandbox()
        self.state = SessionState.IDLE

    async def _execute(self, code: str, timeout: float, on_output: ItemCallback | None) -> Execution:
        sandbox = self._sandbox
        assert sandbox is not None
        limits = self.limits.model_copy(update={"timeout_s": timeout})
        run = self._run = _Run(uuid.uuid4().hex[:12], limits, on_output)
        started = time.monotonic()
        sandbox.send({"type": "execute", "id": run.id, "code": code,
                      "cpu_s": limits.effective_cpu_s, "max_display_bytes": limits.output_bytes * 8})
        try:
            outcome, exit_info = await self._ladder(sandbox, run, timeout)
        except asyncio.CancelledError:
            await asyncio.shield(self._abort(sandbox, run))
            raise
        finally:
            self._run = None
        return self._finish(run, outcome, exit_info, limits, started)

    async def _ladder(self, sandbox: Sandbox, run: _Run, timeout: float
                      ) -> tuple[Outcome | None, ExitInfo | None]:
        """Wait for the cell; interrupt it at the deadline, kill it after the grace period.
        Returns (None, None) when the cell finished by itself."""
        if await self._wait_done(sandbox, run, timeout):
            return None, None
        if sandbox.alive:
            sandbox.interrupt()
            if await self._wait_done(sandbox, run, self._grace):
                return Outcome.INTERRUPTED, None
        outcome = Outcome.KILLED if sandbox.alive else Outcome.CRASHED
        return outcome, await self._kill_and_restart(sandbox)

    async def _wait_done(self, sandbox: Sandbox, run: _Run, timeout: float) -> bool:
        """True when the done frame arrived; False at the deadline or when the sandbox died."""
        done, _ = await asyncio.wait({run.done, sandbox.exited}, timeout=timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
        return run.done in done

    async def _abort(self, sandbox: Sandbox, run: _Run) -> None:
        if not sandbox.alive or run.done.done():
            return
        sandbox.interrupt()
        if not await self._wait_done(sandbox, run, self._grace) and sandbox.alive:
            await self._kill_and_restart(sandbox)

    async def _kill_and_restart(self, sandbox: Sandbox) -> ExitInfo:
        info = await sandbox.kill()
        try:
            await self._recover()
        except SandboxError:
            pass  # state is BROKEN; the next execute retries
        return info

    def _finish(self, run: _Run, outcome: Outcome | None, exit_info: ExitInfo | None,
                limits: Limits, started: float) -> Execution:
        error: ErrorInfo | None = None
        result: dict[str, Any] = run.done.result() if run.done.done() else {}
        if isinstance(result.get("result"), dict):
            run.output.add_display(ResultOutput(data=_str_dict(result["result"])))
        if result.get("status") == "error" and isinstance(result.get("error"), dict):
            raw = result["error"]
            error = ErrorInfo(name=str(raw.get("name", "Error")), value=str(raw.get("value", "")),
                              traceback=str(raw.get("traceback", "")))
        if outcome is None:
            outcome = Outcome.ERROR if error else Outcome.COMPLETED
        elif outcome is Outcome.KILLED:
            error = ErrorInfo(name="TimeoutError", value=(
                f"execution exceeded {limits.timeout_s:g} s and did not stop when interrupted; "
                "the interpreter was restarted and its state lost"))
        elif outcome is Outcome.CRASHED and exit_info is not None:
            error = ErrorInfo(name="SandboxCrashed", value=(
                f"{exit_info.describe()}; the interpreter was restarted and its state lost"))
        elif outcome is Outcome.INTERRUPTED and error is None:
            error = ErrorInfo(name="TimeoutError",
                              value=f"execution exceeded {limits.timeout_s:g} s and was interrupted")
        run.output.flush_decoders()
        return Execution(
            id=run.id, session_id=self.id, outcome=outcome,
            stdout=run.output.text("stdout"), stderr=run.output.text("stderr"),
            outputs=run.output.items(), error=error,
            state_preserved=outcome not in (Outcome.KILLED, Outcome.CRASHED),
            duration_ms=(time.monotonic() - started) * 1000, truncated=run.output.truncated,
            limits=limits,
        )

    # -- sandbox events (SandboxListener) ------------------------------------------------------
    def on_stream(self, name: StreamName, data: bytes) -> None:
        if self._run is not None:
            self._run.output.feed(name, data)

    def on_frame(self, frame: dict[str, Any]) -> None:
        run = self._run
        if run is None or frame.get("id") != run.id:
            return  # a stray frame (for an execution that was already abandoned)
        if frame["type"] == "display" and isinstance(frame.get("data"), dict):
            if self._sandbox is not None:
                self._sandbox.drain()
            run.output.add_display(DisplayOutput(data=_str_dict(frame["data"])))
        elif frame["type"] == "done" and not run.done.done():
            if self._sandbox is not None:
                self._sandbox.drain()
            run.done.set_result(frame)

    def on_exit(self, info: ExitInfo) -> None:
        pass  # the ladder notices through Sandbox.wait()

    # -- files ---------------------------------------------------------------------------------
    async def write_file(self, path: str, data: bytes) -> None:
        self._check_open()
        await self._host.write_file(path, data)

    async def read_file(self, path: str, max_bytes: int = MAX_FILE_BYTES) -> bytes:
        self._check_open()
        return await self._host.read_file(path, max_bytes)

    async def list_files(self) -> list[FileInfo]:
        self._check_open()
        return await self._host.list_files()

    def _check_open(self) -> None:
        if self.state is SessionState.CLOSED:
            raise SessionClosed(f"session {self.id} is closed")


def _str_dict(data: dict[str, Any]) -> dict[str, str]:
    return {str(k): v if isinstance(v, str) else str(v) for k, v in data.items()}
