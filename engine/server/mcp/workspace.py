"""What the MCP tools act on: the session manager they share with the other surfaces, how a session
is created (through the server's capacity rules), and who owns which session.

A session made through MCP belongs to its caller: over HTTP the caller is its API key (the gate has
already checked it), over stdio the one local client. Another caller's session answers exactly like
a session that does not exist, so ids cannot be probed. Ids come from the manager's CSPRNG.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from engine.core.manager import SessionManager
from engine.core.session import Session
from engine.errors import SessionNotFound
from engine.models import MIB, ForkResult, Limits, SessionSpec
from engine.server.http.auth import principal_of
from engine.server.mcp.shape import RESULT_BUDGET_BYTES

LOCAL = "local"
# (session_id, owner, n, snapshot_id) -> the forks, each a new session of `owner`
Fork = Callable[[str, str, int, str | None], Awaitable[list[ForkResult]]]


@dataclass(frozen=True)
class Caller:
    """Who is calling, and where the session API lives for them (None over stdio: no HTTP)."""

    owner: str
    api_base: str | None = None


def caller_from_request(request: Any, *, auth: bool) -> Caller:
    """The caller of an MCP request. Over HTTP, the owner is the principal of the API key the gate
    checked (the same principal that owns sessions on the other surfaces); without keys every HTTP
    caller is the same anonymous one."""
    if request is None:
        return Caller(LOCAL)
    base = str(getattr(request, "base_url", "")).rstrip("/") or None
    return Caller(principal_of(getattr(request, "scope", None) or {}), base)


class Workspace:
    def __init__(
        self,
        manager: SessionManager,
        create: Callable[[SessionSpec, str], Awaitable[Session]],
        defaults: SessionSpec,
        *,
        auth: bool = False,
        inline_bytes: int = 4 * MIB,
        result_bytes: int = RESULT_BUDGET_BYTES,
        fork: Fork | None = None,
    ) -> None:
        self.manager = manager
        self._create = create
        self._fork = fork or self._manager_fork
        self.defaults = defaults
        self.auth = auth
        self.inline_bytes = inline_bytes
        self.result_bytes = result_bytes  # run_python's inline text; the rest goes to a file
        self._owners: dict[str, str] = {}

    async def create(self, caller: Caller, changes: dict[str, Any] | None = None) -> Session:
        """A new session for `caller`: the server's default limits with `changes` applied."""
        spec = self.defaults
        if changes:
            merged = Limits.model_validate({**spec.limits.model_dump(), **changes})
            spec = spec.model_copy(update={"limits": merged})
        session = await self._create(spec, caller.owner)  # counted towards its quota
        self._prune()  # forget sessions closed elsewhere, so the map stays as small as the manager
        self._owners[session.id] = caller.owner
        return session

    async def existing_or_new(self, caller: Caller, session_id: str | None) -> Session:
        """The caller's session `session_id`, or a new one when it is None (the tools' rule)."""
        if session_id is None:
            return await self.create(caller)
        return self.get(caller, session_id)

    async def fork(
        self, caller: Caller, session_id: str, n: int, snapshot_id: str | None
    ) -> list[ForkResult]:
        """`n` forks of the caller's session (or of one of its snapshots), each a new session of
        the caller, counted towards its quota."""
        self.get(caller, session_id)
        forks = await self._fork(session_id, caller.owner, n, snapshot_id)
        self._prune()
        for fork in forks:
            self._owners[fork.session.id] = caller.owner
        return forks

    async def _manager_fork(
        self, session_id: str, owner: str, n: int, snapshot_id: str | None
    ) -> list[ForkResult]:
        return await self.manager.fork(session_id, n=n, snapshot_id=snapshot_id, owner=owner)

    def get(self, caller: Caller, session_id: str) -> Session:
        """The caller's session; SessionNotFound for anyone else's, as for a missing one."""
        if self._owners.get(session_id) != caller.owner:
            raise SessionNotFound(f"no session {session_id!r}")
        try:
            return self.manager.get(session_id)
        except SessionNotFound:
            self._owners.pop(session_id, None)  # closed by idle expiry or another surface
            raise

    def sessions(self, caller: Caller) -> list[Session]:
        live = self._prune()
        return [live[s] for s, owner in self._owners.items() if owner == caller.owner]

    def _prune(self) -> dict[str, Session]:
        """Forget sessions no longer live (idle expiry, the session API); the live ones, by id."""
        live = {session.id: session for session in self.manager.list()}
        for session_id in [s for s in self._owners if s not in live]:
            del self._owners[session_id]
        return live

    async def close(self, caller: Caller, session_id: str) -> None:
        self.get(caller, session_id)
        self._owners.pop(session_id, None)
        await self.manager.close(session_id)


class WorkspaceRef:
    """The workspace, once the server that holds it has started (tools are registered before)."""

    def __init__(self) -> None:
        self._workspace: Workspace | None = None

    def set(self, workspace: Workspace | None) -> None:
        self._workspace = workspace

    def get(self) -> Workspace:
        if self._workspace is None:
            raise RuntimeError("the MCP server is not running")
        return self._workspace
