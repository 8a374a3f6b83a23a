"""`SessionRunner`: the orchestrator's CodeRunner on top of the core's SessionManager.

This is the seam that keeps the orchestrator and the core apart: the orchestrator sees only
`execute(conversation_id, code)` and `run_command(conversation_id, command)` (its CommandRunner),
the core only sessions. One session per conversation, created on
its first execution (or when `session` asks for it first).
"""

from __future__ import annotations

import asyncio
import contextlib

from engine.command_models import CommandRequest, CommandResult
from engine.core.manager import SessionManager
from engine.core.session import Session
from engine.errors import CommandNotFound, CommandStartFailed, SessionClosed, SessionNotFound
from engine.models import Execution, SessionSpec, SessionState


class SessionRunner:
    def __init__(self, manager: SessionManager, spec: SessionSpec | None = None) -> None:
        self.manager = manager
        self.spec = spec
        self._sessions: dict[str, str] = {}  # conversation id -> session id
        self._locks: dict[str, asyncio.Lock] = {}
        # Conversations whose session was lost and replaced since their last execution: the next
        # one must report that the state is gone, even if the replacement was made before it.
        self._replaced: set[str] = set()

    async def execute(
        self,
        conversation_id: str,
        code: str,
        *,
        timeout_s: float | None = None,
        max_timeout_s: float | None = None,
    ) -> Execution:
        """Run `code` in the conversation's session, queueing behind an execution already running
        there (a session may be shared). Cancelling the caller stops the execution (the session
        interrupts, then kills, the cell)."""
        lock = self._lock(conversation_id)
        async with lock:  # one execution at a time per conversation, and one session creation
            session = await self._session(conversation_id)
            replaced = conversation_id in self._replaced
            self._replaced.discard(conversation_id)
            timeout = timeout_s or session.limits.timeout_s
            if max_timeout_s is not None:
                timeout = min(timeout, max_timeout_s)
            execution = await session.execute(code, timeout_s=timeout, wait=True)
        if replaced and execution.state_preserved:
            # The conversation had a session that is gone (expired or closed): whatever the
            # model defined before does not exist any more, and it must be told.
            execution = execution.model_copy(update={"state_preserved": False})
        return execution

    async def run_command(
        self,
        conversation_id: str,
        command: str,
        *,
        timeout_s: float | None = None,
        max_timeout_s: float | None = None,
    ) -> CommandResult:
        """Run the shell command line in the conversation's session, beside its interpreter (no
        queueing behind an execution). Its time limit is `timeout_s`, else the session's, capped
        by `max_timeout_s`. A command that cannot start is a result with its `error`; cancelling
        the caller kills the command."""
        session = await self.session(conversation_id)
        timeout = timeout_s or session.limits.timeout_s
        if max_timeout_s is not None:
            timeout = min(timeout, max_timeout_s)
        request = CommandRequest(cmd=command, timeout_s=max(timeout, 0.001))
        try:
            running = await session.commands.start(request)
        except CommandStartFailed as exc:
            return CommandResult(id="", pid=0, error=exc.message)
        try:
            return await running.wait()
        except asyncio.CancelledError:
            with contextlib.suppress(CommandNotFound):
                running.signal()
            raise

    async def session(self, conversation_id: str) -> Session:
        """The conversation's session, started now if it has none."""
        async with self._lock(conversation_id):
            return await self._session(conversation_id)

    def _lock(self, conversation_id: str) -> asyncio.Lock:
        return self._locks.setdefault(conversation_id, asyncio.Lock())

    async def _session(self, conversation_id: str) -> Session:
        """The conversation's session, or a new one (remembered as a replacement if it had one that
        was lost). Called with the conversation's lock held."""
        session_id = self._sessions.get(conversation_id)
        if session_id is not None:
            with contextlib.suppress(SessionNotFound):
                session = self.manager.get(session_id)
                if session.state is not SessionState.CLOSED:
                    return session
            self._replaced.add(conversation_id)
        session = await self.create(self.spec, self._owner_of(conversation_id))
        self._sessions[conversation_id] = session.id
        return session

    def _owner_of(self, conversation_id: str) -> str | None:
        """Who a new session of the conversation belongs to (None: nobody in particular)."""
        return None

    async def create(self, spec: SessionSpec | None, owner: str | None = None) -> Session:
        """A new session (counted towards `owner`'s quota)."""
        return await self.manager.create(spec, owner=owner)

    def session_id(self, conversation_id: str) -> str | None:
        """The id of the conversation's session, if it has one (for file access)."""
        return self._sessions.get(conversation_id)

    def _forget(self, conversation_id: str) -> str | None:
        """Drop what is known of the conversation; the id of its session, if it had one."""
        self._locks.pop(conversation_id, None)
        self._replaced.discard(conversation_id)
        return self._sessions.pop(conversation_id, None)

    async def close(self, conversation_id: str) -> None:
        """Close the conversation's session; the next execute starts a new one."""
        session_id = self._forget(conversation_id)
        if session_id is not None:
            with contextlib.suppress(SessionNotFound, SessionClosed):
                await self.manager.close(session_id)

    async def aclose(self) -> None:
        """Close every session this runner created."""
        for conversation_id in list(self._sessions):
            await self.close(conversation_id)
