"""`Containers`: the server's CodeRunner. One session per conversation, created on its first code
block, or bound to an existing session: a Responses `container` is an lci session id, so passing it
back continues in that session with its variables and files.

It is `engine.session_runner.SessionRunner` plus binding, and plus keeping sessions after their request:
containers kept (Responses) would otherwise hold their slot until the manager's idle expiry, so
when the manager is full the least recently used idle one that no request is using is closed to
make room.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict

from engine.core.manager import SessionManager
from engine.core.session import Session
from engine.errors import CapacityExceeded, SessionClosed, SessionNotFound
from engine.models import SessionSpec, SessionState
from engine.session_runner import SessionRunner


class Containers(SessionRunner):
    def __init__(self, manager: SessionManager, spec: SessionSpec | None = None) -> None:
        super().__init__(manager, spec)
        self._kept: OrderedDict[str, None] = OrderedDict()  # kept containers, least recent first

    def bind(self, conversation_id: str, session_id: str) -> None:
        """Run the conversation's code in an existing session. Raises SessionNotFound."""
        session = self.manager.get(session_id)
        if session.state is SessionState.CLOSED:
            raise SessionNotFound(f"no session {session_id!r}")
        self._sessions[conversation_id] = session_id
        self._kept.pop(session_id, None)

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

    async def release(self, conversation_id: str, *, close: bool) -> None:
        """Forget the conversation; with `close`, close its session too, else keep it as a
        container that may be closed when room is needed."""
        if close:
            await self.close(conversation_id)
            return
        session_id = self._forget(conversation_id)
        if session_id is not None:
            self._kept[session_id] = None
            self._kept.move_to_end(session_id)
