"""SessionManager: the registry of live sessions, their capacity, idle expiry and shutdown.

    async with SessionManager() as manager:
        session = await manager.create()
        execution = await session.execute("6 * 7")

Backends are built on first use by a factory with lazy imports, so `import engine` never imports the
docker SDK and a host without Docker still serves subprocess sessions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from types import TracebackType

from engine import observe
from engine.config import Settings
from engine.core.backends import create_backend
from engine.core.capacity import Admission, Capacity, CapacitySettings, default_memory_budget_mb
from engine.core.forking import fork_session
from engine.core.sandbox import Backend
from engine.core.session import Session
from engine.errors import SessionNotFound
from engine.models import BackendName, ForkResult, SessionSpec

log = logging.getLogger(__name__)


def new_session_id() -> str:
    return uuid.uuid4().hex[:16]


class SessionManager:
    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self._sessions: dict[str, Session] = {}
        self._admissions: dict[str, Admission] = {}
        self._specs: dict[str, SessionSpec] = {}  # what each session was made with (for a fork)
        self._backends: dict[BackendName, Backend] = {}
        self._backend_lock = asyncio.Lock()
        self._expiry_task: asyncio.Task[None] | None = None
        self.capacity = Capacity(self._capacity_settings())

    def _capacity_settings(self) -> CapacitySettings:
        s = self.settings
        return CapacitySettings(
            max_sessions=s.max_sessions,
            memory_budget_mb=s.memory_budget_mb or default_memory_budget_mb(),
            max_sessions_per_owner=s.max_sessions_per_owner,
            max_executions=s.max_concurrent_executions or 4 * (os.cpu_count() or 1),
            execution_wait_s=s.execution_wait_s,
        )

    async def __aenter__(self) -> SessionManager:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close_all()

    async def backend(self, name: BackendName) -> Backend:
        async with self._backend_lock:
            if name not in self._backends:
                backend = await asyncio.to_thread(create_backend, name, self.settings)
                start = getattr(backend, "start", None)
                if start is not None:
                    await start()
                self._backends[name] = backend
            return self._backends[name]

    async def create(
        self, spec: SessionSpec | None = None, owner: str | None = None, session_id: str = ""
    ) -> Session:
        """Start a session and return it once its interpreter is ready. `owner` (an API key's
        identity) counts towards that owner's quota. Raises CapacityExceeded past a cap.
        `session_id`: the id to use (a cluster names the session's actor first); default new."""
        spec = spec or SessionSpec(backend=self.settings.backend, limits=self.settings.limits)
        self.settings.max_limits.check(spec.limits)  # whichever surface the limits came from
        # Settings may be changed on a live manager (tests, embedders): the count cap follows.
        self.capacity.settings.max_sessions = self.settings.max_sessions
        surface = observe.surface.get()
        started = time.perf_counter()
        with (
            self.capacity.admit(spec.limits, owner) as admission,
            observe.span("session.start", backend=spec.backend.value) as span,
        ):
            try:
                session = await self._start(spec, owner, session_id or new_session_id())
            except BaseException:
                observe.get().session_start_failed(spec.backend.value, surface)
                raise
            self._sessions[session.id] = session
            self._admissions[session.id] = admission
            self._specs[session.id] = spec
        elapsed = time.perf_counter() - started
        observe.get().session_started(spec.backend.value, surface, session.start_path, elapsed)
        if span is not None:
            span.set_attribute("lci.start_path", session.start_path)
            span.set_attribute("lci.session_id", session.id)
        observe.audit(
            "session.create",
            session_id=session.id,
            backend=spec.backend.value,
            path=session.start_path,
            network=spec.limits.network,
            duration_ms=round(elapsed * 1000, 2),
        )
        self._ensure_expiry()
        return session

    async def _start(self, spec: SessionSpec, owner: str | None, session_id: str) -> Session:
        backend = await self.backend(spec.backend)
        host = await backend.open(session_id, spec)
        session = Session(
            session_id,
            spec.backend,
            host,
            spec.limits,
            self.settings.interrupt_grace_s,
            slots=self.capacity.execution,
        )
        session.owner = owner
        session.surface = observe.surface.get()
        session.max_snapshots = self.settings.max_snapshots_per_session
        try:
            await session.start()
        except BaseException:
            await session.close()
            raise
        return session

    async def fork(
        self,
        session_id: str,
        *,
        n: int = 1,
        snapshot_id: str | None = None,
        owner: str | None = None,
    ) -> list[ForkResult]:
        """`n` new sessions with the state and files of a live one (or of one of its snapshots),
        each in its own sandbox, owned by `owner` and counted against its quota like any new
        session. What of the namespace cannot cross into a new sandbox is reported per name."""
        source = self.get(session_id)
        spec = self._specs.get(session_id) or SessionSpec(
            backend=source.backend, limits=source.limits
        )
        return await fork_session(
            source,
            spec,
            n=n,
            snapshot_id=snapshot_id,
            owner=owner,
            create=self.create,
            close=self.close,
        )

    def get(self, session_id: str) -> Session:
        try:
            return self._sessions[session_id]
        except KeyError:
            raise SessionNotFound(f"no session {session_id!r}") from None

    def list(self) -> list[Session]:
        return list(self._sessions.values())

    def count(self) -> int:
        """How many sessions are live (cheaper than `list` where sessions are remote)."""
        return len(self._sessions)

    async def close(self, session_id: str, reason: str = "closed") -> None:
        """Close a live session; `reason` (closed, idle, ...) is what observers are told."""
        session = self._sessions.pop(session_id, None)
        if session is None:
            raise SessionNotFound(f"no session {session_id!r}")
        try:
            await session.close()
        finally:
            self._release(session_id)
            _closed(session, reason)

    def _release(self, session_id: str) -> None:
        self._specs.pop(session_id, None)
        admission = self._admissions.pop(session_id, None)
        if admission is not None:
            admission.release()

    async def close_all(self) -> None:
        """Close every session and backend; nothing the manager started is left running."""
        if self._expiry_task is not None:
            self._expiry_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._expiry_task
            self._expiry_task = None
        sessions, self._sessions = list(self._sessions.values()), {}
        results = await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)
        for session in sessions:
            self._release(session.id)
            _closed(session, "shutdown")
        for result in results:
            if isinstance(result, BaseException):
                log.warning("closing a session failed: %r", result)
        backends, self._backends = list(self._backends.values()), {}
        for backend in backends:
            await backend.close()

    async def expire_idle(self) -> int:
        """Close sessions idle longer than `idle_timeout_s`; returns how many were closed."""
        cutoff = time.time() - self.settings.idle_timeout_s
        stale = [s.id for s in self._sessions.values() if not s.busy and s.last_used_at < cutoff]
        for session_id in stale:
            with contextlib.suppress(SessionNotFound):
                await self.close(session_id, "idle")
        return len(stale)

    def _ensure_expiry(self) -> None:
        if self._expiry_task is None or self._expiry_task.done():
            self._expiry_task = asyncio.get_running_loop().create_task(self._expire_forever())

    async def _expire_forever(self) -> None:
        interval = min(60.0, max(0.05, self.settings.idle_timeout_s / 4))
        while True:
            await asyncio.sleep(interval)
            try:
                await self.expire_idle()
            except Exception:  # keep expiring whatever one close did
                log.exception("idle expiry failed")


def _closed(session: Session, reason: str) -> None:
    observe.get().session_closed(session.backend.value, session.surface, reason)
    observe.audit(
        "session.close",
        session_id=session.id,
        backend=session.backend.value,
        reason=reason,
        executions=session.executions,
        restarts=session.restarts,
    )
