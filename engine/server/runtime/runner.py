"""`ServerRunner`: the server's CodeRunner. One session per conversation, created on its first code
block, or bound to an existing session: a Responses `container` is an lci session id, so passing it
back continues in that session with its variables and files.

Every session the server starts belongs to the principal (API key) of the request that started it:
to every other principal it does not exist (SessionNotFound, a 404), whichever surface asks.

It is `engine.session_runner.SessionRunner` plus owners, binding, and keeping sessions after their
request:
containers kept (Responses) would otherwise hold their slot until the manager's idle expiry, so
when the manager is full the least recently used idle one that no request is using is closed to
make room, but only one of the same principal: a key never loses its containers to make room for
another key's (that key gets the 429; per-key quotas, `max_sessions_per_owner`, keep one key from
filling the server).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict

from engine.core.manager import SessionManager
from engine.core.session import Session
from engine.errors import CapacityExceeded, SessionClosed, SessionNotFound
from engine.models import ForkResult, SessionSpec, SessionState
from engine.server.http.auth import ANONYMOUS
from engine.session_runner import SessionRunner


class ServerRunner(SessionRunner):
    def __init__(self, manager: SessionManager, spec: SessionSpec | None = None) -> None:
        super().__init__(manager, spec)
        self._kept: OrderedDict[str, None] = OrderedDict()  # kept containers, least recent first
        self._owners: dict[str, str] = {}  # session id -> principal
        self._conversation_owners: dict[str, str] = {}
        self._expiry: dict[str, asyncio.TimerHandle] = {}  # short-lived containers' timers
        self._closing: set[asyncio.Task[None]] = set()

    def owned(self, session_id: str, principal: str) -> Session:
        """The session, if `principal` owns it; SessionNotFound otherwise, exactly as if it did not
        exist (another key must not even learn that the id is live)."""
        session = self.manager.get(session_id)
        if self._owner(session) != principal:
            raise SessionNotFound(f"no session {session_id!r}")
        return session

    def session_owner(self, session_id: str) -> str:
        """The principal a session belongs to (SessionNotFound when there is none): whom a
        request authorized by something other than a key (a signed URL) acts for."""
        return self._owner(self.manager.get(session_id))

    def _owner(self, session: Session) -> str:
        # A session another replica of a cluster made is not in `_owners`: its owner is its own.
        return self._owners.get(session.id, session.owner or ANONYMOUS)

    def owned_sessions(self, principal: str) -> list[Session]:
        return [
            s
            for s in self.manager.list()
            if self._owners.get(s.id, s.owner or ANONYMOUS) == principal
        ]

    def assign(self, conversation_id: str, principal: str) -> None:
        """Sessions the conversation starts will belong to `principal`."""
        self._conversation_owners[conversation_id] = principal

    def bind(self, conversation_id: str, session_id: str, principal: str = ANONYMOUS) -> None:
        """Run the conversation's code in an existing session of `principal`. Raises
        SessionNotFound."""
        session = self.owned(session_id, principal)
        if session.state is SessionState.CLOSED:
            raise SessionNotFound(f"no session {session_id!r}")
        self._sessions[conversation_id] = session_id
        self._kept.pop(session_id, None)
        timer = self._expiry.pop(session_id, None)
        if timer is not None:  # continued: it is the client's container now
            timer.cancel()

    async def create(self, spec: SessionSpec | None, owner: str | None = None) -> Session:
        """A new session of `owner` (None: the caller records it), closing kept containers to
        make room if the manager is full."""
        live = {s.id for s in self.manager.list()}
        self._owners = {sid: who for sid, who in self._owners.items() if sid in live}
        while True:
            try:
                # The anonymous principal (no keys configured) has no quota of its own.
                session = await self.manager.create(spec, owner=owner or None)
            except CapacityExceeded:
                if not await self._evict(owner or ANONYMOUS):
                    raise
            else:
                if owner is not None:
                    self._owners[session.id] = owner
                return session

    async def fork(
        self, session_id: str, principal: str, *, n: int = 1, snapshot_id: str | None = None
    ) -> list[ForkResult]:
        """`n` forks of `principal`'s session (or of one of its snapshots), each a new session of
        `principal`, counted against its quota. SessionNotFound for another principal's session."""
        self.owned(session_id, principal)
        forks = await self.manager.fork(
            session_id, n=n, snapshot_id=snapshot_id, owner=principal or None
        )
        for fork in forks:
            self._owners[fork.session.id] = principal
        return forks

    def owner_of(self, session_id: str) -> str:
        return self._owners.get(session_id, ANONYMOUS)

    def _owner_of(self, conversation_id: str) -> str | None:
        return self._conversation_owners.get(conversation_id, ANONYMOUS)

    async def _session(self, conversation_id: str) -> Session:
        """The conversation's session; a new one belongs to the conversation's principal (set
        with no await between its creation and here, so no other request sees it unowned)."""
        session = await super()._session(conversation_id)
        owner = self._conversation_owners.get(conversation_id, ANONYMOUS)
        self._owners.setdefault(session.id, owner)
        return session

    def _forget(self, conversation_id: str) -> str | None:
        self._conversation_owners.pop(conversation_id, None)
        return super()._forget(conversation_id)

    async def _evict(self, owner: str) -> bool:
        """Close the least recently used kept container of `owner` that is idle and unused; False
        if there is none."""
        in_use = set(self._sessions.values())
        for session_id in list(self._kept):
            try:
                session = self.manager.get(session_id)
            except SessionNotFound:
                self._kept.pop(session_id)
                continue
            if self.owner_of(session_id) != owner:
                continue  # another key's: never closed for this one
            self._kept.pop(session_id)
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
