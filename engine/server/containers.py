"""`Containers`: the server's CodeRunner. One session per conversation, created on its first code
block, or bound to an existing session: a Responses `container` is an lci session id, so passing it
back continues in that session with its variables and files.

It is `engine.session_runner.SessionRunner` plus binding, and plus keeping sessions after their request:
containers kept (Responses) would otherwise hold their slot until the manager's idle expiry, so
when the manager is full the least recently used idle one that no request is using is closed to
make room.
"""

from __future__ import annotations

import asyncio
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
        self._expiry: dict[str, asyncio.TimerHandle] = {}  # short-lived containers' timers
        self._closing: set[asyncio.Task[None]] = set()

    def bind(self, conversation_id: str, session_id: str) -> None:
        """Run the conversation's code in an existing session. Raises SessionNotFound."""
        session = self.manager.get(session_id)
        if session.state is SessionState.CLOSED:
            raise SessionNotFound(f"no session {session_id!r}")
        self._sessions[conversation_id] = session_id
        self._kept.pop(session_id, None)
        timer = self._expiry.pop(session_id, None)
        if timer is not None:  # continued: it is the client's container now
            timer.cancel()

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

    async def release(
        self, conversation_id: str, *, close: bool, keep_for_s: float | None = None
    ) -> None:
        """Forget the conversation; with `close`, close its session too, else keep it as a
        container that may be closed when room is needed. `keep_for_s`: close it that long from
        now unless a request continues in it first (0: now)."""
        if close or keep_for_s == 0:
            await self.close(conversation_id)
            return
        session_id = self._forget(conversation_id)
        if session_id is None:
            return
        self._kept[session_id] = None
        self._kept.move_to_end(session_id)
        if keep_for_s is not None and session_id not in self._expiry:
            loop = asyncio.get_running_loop()
            self._expiry[session_id] = loop.call_later(keep_for_s, self._expire, session_id)

    def _expire(self, session_id: str) -> None:
        self._expiry.pop(session_id, None)
        if session_id not in self._kept:
            return  # in use again, or already closed to make room
        self._kept.pop(session_id)
        task = asyncio.get_running_loop().create_task(self._close_quietly(session_id))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _close_quietly(self, session_id: str) -> None:
        with contextlib.suppress(SessionNotFound, SessionClosed):
            await self.manager.close(session_id)
