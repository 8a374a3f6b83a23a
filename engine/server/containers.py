"""`Containers`: the server's CodeRunner. One session per conversation, created on its first code
block, or bound to an existing session: a Responses `container` is an lci session id, so passing it
back continues in that session with its variables and files.

(It is `engine.runner.SessionRunner` plus binding, and plus knowing the session before the code
runs, which the Responses surface needs to name the container in the call item it announces.)

Containers kept after their request (Responses) would otherwise hold their slot until the
manager's idle expiry: when the manager is full, the least recently used idle one that no request
is using is closed to make room.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict

from engine.core.manager import SessionManager
from engine.core.session import Session
from engine.errors import CapacityExceeded, SessionClosed, SessionNotFound
from engine.models import Execution, SessionSpec, SessionState


class Containers:
    def __init__(self, manager: SessionManager, spec: SessionSpec | None = None) -> None:
        self.manager = manager
        self.spec = spec
        self._sessions: dict[str, str] = {}  # conversation id -> session id
        self._locks: dict[str, asyncio.Lock] = {}
        self._kept: OrderedDict[str, None] = OrderedDict()  # kept containers, least recent first

    def bind(self, conversation_id: str, session_id: str) -> None:
        """Run the conversation's code in an existing session. Raises SessionNotFound."""
        session = self.manager.get(session_id)
        if session.state is SessionState.CLOSED:
            raise SessionNotFound(f"no session {session_id!r}")
        self._sessions[conversation_id] = session_id
        self._kept.pop(session_id, None)

    async def session(self, conversation_id: str) -> Session:
        """The conversation's session, started now if it has none."""
        session, _ = await self._session(conversation_id)
        return session

    async def _session(self, conversation_id: str) -> tuple[Session, bool]:
        """The session, and whether it replaces one that was lost (closed or expired)."""
        lock = self._locks.setdefault(conversation_id, asyncio.Lock())
        async with lock:
            session_id = self._sessions.get(conversation_id)
            if session_id is not None:
                with contextlib.suppress(SessionNotFound):
                    session = self.manager.get(session_id)
                    if session.state is not SessionState.CLOSED:
                        return session, False
            session = await self.create(self.spec)
            self._sessions[conversation_id] = session.id
            return session, session_id is not None

    async def create(self, spec: SessionSpec | None) -> Session:
        """A new session, closing kept containers to make room if the manager is full."""
        while True:
            try:
                return await self.manager.create(spec)
            except CapacityExceeded:
                if not await self._evict():
                    raise

    async def _evict(self) -> bool:
        """Close the least recently used kept container that is idle and unused; False if none."""
        in_use = set(self._sessions.values())
        for session_id in list(self._kept):
            self._kept.pop(session_id)
            try:
                session = self.manager.get(session_id)
            except SessionNotFound:
                continue
            if session_id in in_use or session.busy:
                continue
            with contextlib.suppress(SessionNotFound, SessionClosed):
                await self.manager.close(session_id)
                return True
        return False

    async def execute(
        self, conversation_id: str, code: str, *, timeout_s: float | None = None
    ) -> Execution:
        """Run `code` in the conversation's session, queueing behind another request's execution
        in a shared container. Cancelling the caller stops the execution."""
        session, fresh = await self._session(conversation_id)
        execution = await session.execute(code, timeout_s=timeout_s, wait=True)
        if fresh and execution.state_preserved:
            # Whatever the model defined before is gone with the old session: say so.
            execution = execution.model_copy(update={"state_preserved": False})
        return execution

    def session_id(self, conversation_id: str) -> str | None:
        return self._sessions.get(conversation_id)

    async def release(self, conversation_id: str, *, close: bool) -> None:
        """Forget the conversation; with `close`, close its session too, else keep it as a
        container that may be closed when room is needed."""
        session_id = self._sessions.pop(conversation_id, None)
        self._locks.pop(conversation_id, None)
        if session_id is None:
            return
        if close:
            with contextlib.suppress(SessionNotFound, SessionClosed):
                await self.manager.close(session_id)
        else:
            self._kept[session_id] = None
            self._kept.move_to_end(session_id)
