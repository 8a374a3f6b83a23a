"""`SessionRunner`: the orchestrator's CodeRunner on top of the core's SessionManager.

This is the seam that keeps the orchestrator and the core apart: the orchestrator sees only
`execute(conversation_id, code)`, the core only sessions. One session per conversation, created on
its first execution.
"""

from __future__ import annotations

import asyncio
import contextlib

from engine.core.manager import SessionManager
from engine.core.session import Session
from engine.errors import SessionClosed, SessionNotFound
from engine.models import Execution, SessionSpec, SessionState


class SessionRunner:
    def __init__(self, manager: SessionManager, spec: SessionSpec | None = None) -> None:
        self.manager = manager
        self.spec = spec
        self._sessions: dict[str, str] = {}  # conversation id -> session id
        self._locks: dict[str, asyncio.Lock] = {}

    async def execute(
        self, conversation_id: str, code: str, *, timeout_s: float | None = None
    ) -> Execution:
        """Run `code` in the conversation's session. Cancelling the caller stops the execution
        (the session interrupts, then kills, the cell)."""
        lock = self._locks.setdefault(conversation_id, asyncio.Lock())
        async with lock:  # one execution at a time per conversation, and one session creation
            session, fresh = await self._session(conversation_id)
            execution = await session.execute(code, timeout_s=timeout_s)
        if fresh and execution.state_preserved:
            # The conversation had a session that is gone (expired or closed): whatever the
            # model defined before does not exist any more, and it must be told.
            execution = execution.model_copy(update={"state_preserved": False})
        return execution

    async def _session(self, conversation_id: str) -> tuple[Session, bool]:
        """The conversation's session, and whether it replaces one that was lost."""
        session_id = self._sessions.get(conversation_id)
        if session_id is not None:
            try:
                session = self.manager.get(session_id)
            except SessionNotFound:
                session = None
            if session is not None and session.state is not SessionState.CLOSED:
                return session, False
        session = await self.manager.create(self.spec)
        self._sessions[conversation_id] = session.id
        return session, session_id is not None

    def session_id(self, conversation_id: str) -> str | None:
        """The id of the conversation's session, if it has one (for file access)."""
        return self._sessions.get(conversation_id)

    async def close(self, conversation_id: str) -> None:
        """Close the conversation's session; the next execute starts a new one."""
        session_id = self._sessions.pop(conversation_id, None)
        self._locks.pop(conversation_id, None)
        if session_id is not None:
            with contextlib.suppress(SessionNotFound, SessionClosed):
                await self.manager.close(session_id)

    async def aclose(self) -> None:
        """Close every session this runner created."""
        for conversation_id in list(self._sessions):
            await self.close(conversation_id)
