"""E2B sandboxes over lci sessions: what each one holds, its lifetime, and its code contexts.

An E2B sandbox is one lci session (its default context) plus one more lci session per context
created with `POST /contexts`. Contexts are separate sessions rather than namespaces inside one
interpreter because that is what E2B's contexts are, separate Jupyter kernels: each has its own
state, a restart is a real fresh interpreter (imported modules included), a cell stuck in one
context does not block or kill another, and nothing has to be injected into user code to switch
namespaces. The cost: an extra context has its own working directory; the files API and the
default context share one.

A sandbox lives until it is killed or its E2B timeout passes (checked every second); its sessions
are closed then. If lci closes a session itself (idle expiry), the sandbox counts as gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
import uuid
from dataclasses import dataclass, field

from engine.core.session import Session
from engine.errors import (
    BadParameter,
    NotFound,
    SandboxNotFound,
    SessionClosed,
    SessionNotFound,
)
from engine.models import SessionSpec, SessionState
from engine.server.runtime.runner import ServerRunner

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 300  # E2B's default sandbox lifetime
MAX_TIMEOUT_S = 24 * 3600
REAP_INTERVAL_S = 1.0


@dataclass
class Context:
    """A code context: the id clients use, and the lci session that runs its code."""

    id: str
    session_id: str
    cwd: str = ""  # where its interpreter starts (see `HOME`)
    # Cells lci ran besides the client's (the moves to HOME, bash cells): left out of its count.
    hidden_cells: int = 0
    language: str = "python"
    # A bash context runs in the default context's session (one filesystem, as in E2B's sandbox):
    # its cells, counted here, are Python cells there that run bash; `bash_state` names the
    # state (cwd, variables) they keep, a new one after a restart (see `bash`).
    bash_cells: int = 0
    bash_state: str = ""


@dataclass
class E2BSandbox:
    id: str
    token: str  # given to whoever created or connected it; sandbox-addressed requests carry it
    template: str
    metadata: dict[str, str]
    envs: dict[str, str]
    started_at: float
    end_at: float
    spec: SessionSpec
    owner: str  # the principal (API key) that created it; only it sees the sandbox
    default: Context
    contexts: dict[str, Context] = field(default_factory=dict)  # the default one included
    default_bash: Context | None = None  # where language="bash" without a context runs


class E2BSandboxes:
    def __init__(self, runner: ServerRunner) -> None:
        self.runner = runner
        self._sandboxes: dict[str, E2BSandbox] = {}
        self._reaper: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()  # context changes of every sandbox: rare, and short
        self.debug_lock = asyncio.Lock()  # one debug-mode sandbox, however many ask at once

    # -- lifecycle --------------------------------------------------------------------------------
    async def create(
        self,
        spec: SessionSpec,
        *,
        template: str,
        metadata: dict[str, str],
        timeout_s: int | None,
        owner: str,
        sandbox_id: str | None = None,
    ) -> E2BSandbox:
        _timeout(timeout_s)  # checked before anything is started
        session = await self.runner.create(spec, owner)
        return await self.adopt(
            session,
            spec,
            template=template,
            metadata=metadata,
            timeout_s=timeout_s,
            owner=owner,
            sandbox_id=sandbox_id,
        )

    async def adopt(
        self,
        session: Session,
        spec: SessionSpec,
        *,
        template: str,
        metadata: dict[str, str],
        timeout_s: int | None,
        owner: str,
        sandbox_id: str | None = None,
        visible_cells: int = 0,
    ) -> E2BSandbox:
        """A sandbox around a session already started for `owner`: a new one, or a fork whose
        interpreter holds a sandbox's state, its count of cells (`visible_cells`) going on."""
        lifetime = _timeout(timeout_s)
        now = time.time()
        default = Context(uuid.uuid4().hex[:12], session.id)
        await _start_in_home(session, default)
        default.hidden_cells = session.executions - visible_cells
        sandbox = E2BSandbox(
            id=sandbox_id or "i" + uuid.uuid4().hex[:19],
            token=secrets.token_urlsafe(24),
            template=template,
            metadata=metadata,
            envs=dict(spec.env),
            started_at=now,
            end_at=now + lifetime,
            spec=spec,
            owner=owner,
            default=default,
            contexts={default.id: default},
        )
        self._sandboxes[sandbox.id] = sandbox
        self._ensure_reaper()
        return sandbox

    def get(self, sandbox_id: str, owner: str | None = None) -> E2BSandbox:
        """The live sandbox; raises SandboxNotFound for an unknown, killed or expired one, and
        for one of another owner (when `owner` is given), exactly as if it did not exist."""
        sandbox = self._sandboxes.get(sandbox_id)
        if sandbox is None or not self._alive(sandbox) or owner not in (None, sandbox.owner):
            raise SandboxNotFound(f"sandbox {sandbox_id!r} was not found", "sandboxID")
        return sandbox

    def running(self) -> list[E2BSandbox]:
        """Every live sandbox, whoever owns it (a signed file URL names none: see `signing.py`)."""
        return [s for s in self._sandboxes.values() if self._alive(s)]

    def list(self, owner: str) -> list[E2BSandbox]:
        return [s for s in self._sandboxes.values() if self._alive(s) and s.owner == owner]

    def set_timeout(self, sandbox: E2BSandbox, timeout_s: int, *, only_extend: bool) -> None:
        end_at = time.time() + _timeout(timeout_s)
        if not only_extend or end_at > sandbox.end_at:
            sandbox.end_at = end_at

    async def kill(self, sandbox_id: str) -> None:
        """Close the sandbox's sessions; raises SandboxNotFound if it was already gone (expired
        ones not yet reaped included), after closing them all the same."""
        sandbox = self._sandboxes.pop(sandbox_id, None)
        if sandbox is None:
            raise SandboxNotFound(f"sandbox {sandbox_id!r} was not found", "sandboxID")
        alive = self._alive(sandbox)
        for context in list(sandbox.contexts.values()):
            await self._close_session(context.session_id)
        if not alive:
            raise SandboxNotFound(f"sandbox {sandbox_id!r} was not found", "sandboxID")

    async def aclose(self) -> None:
        """Stop the reaper (the sessions themselves are closed with the manager)."""
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
            self._reaper = None
        self._sandboxes.clear()

    # -- contexts -------------------------------------------------------------------------------
    def session(self, sandbox: E2BSandbox, context_id: str | None = None) -> Session:
        """The session running `context_id` (default: the default context)."""
        context = sandbox.default if context_id is None else self.context(sandbox, context_id)
        try:
            session = self.runner.manager.get(context.session_id)
        except SessionNotFound:
            raise SessionClosed(f"context {context.id} of sandbox {sandbox.id} is gone") from None
        return session

    def context(self, sandbox: E2BSandbox, context_id: str) -> Context:
        try:
            return sandbox.contexts[context_id]
        except KeyError:
            raise NotFound(f"context {context_id!r} not found") from None

    async def create_context(self, sandbox: E2BSandbox) -> Context:
        session = await self.runner.create(sandbox.spec, sandbox.owner)
        context = Context(uuid.uuid4().hex[:12], session.id)
        await _start_in_home(session, context)
        async with self._lock:
            if sandbox.id not in self._sandboxes:  # killed meanwhile
                await self._close_session(session.id)
                raise SandboxNotFound(f"sandbox {sandbox.id!r} was not found", "sandboxID")
            sandbox.contexts[context.id] = context
        return context

    async def bash_context(
        self, sandbox: E2BSandbox, cwd: str | None = None, *, default: bool = False
    ) -> Context:
        """A new bash context (with `default`: the sandbox's default one, made on first use,
        as E2B makes one per language), starting in `cwd` (default: where the sandbox starts)."""
        async with self._lock:
            if sandbox.id not in self._sandboxes:
                raise SandboxNotFound(f"sandbox {sandbox.id!r} was not found", "sandboxID")
            if default and sandbox.default_bash is not None:
                return sandbox.default_bash
            context = Context(
                uuid.uuid4().hex[:12],
                sandbox.default.session_id,
                cwd=cwd or sandbox.default.cwd,
                language="bash",
                bash_state=uuid.uuid4().hex,
            )
            sandbox.contexts[context.id] = context
            if default:
                sandbox.default_bash = context
        return context

    async def remove_context(self, sandbox: E2BSandbox, context_id: str) -> None:
        context = self.context(sandbox, context_id)
        if context is sandbox.default:
            raise BadParameter("the default context cannot be removed", "context_id")
        async with self._lock:
            sandbox.contexts.pop(context.id, None)
            if context is sandbox.default_bash:
                sandbox.default_bash = None
        if context.language != "bash":  # a bash context's session is the default context's
            await self._close_session(context.session_id)

    async def restart_context(self, sandbox: E2BSandbox, context_id: str) -> None:
        context = self.context(sandbox, context_id)
        if context.language == "bash":
            context.bash_state = uuid.uuid4().hex  # a fresh bash: nothing carried over
            return
        session = self.session(sandbox, context_id)
        await session.restart()
        await _start_in_home(session, self.context(sandbox, context_id))

    # -- expiry ---------------------------------------------------------------------------------
    def _alive(self, sandbox: E2BSandbox) -> bool:
        if sandbox.end_at <= time.time():
            return False
        try:
            session = self.runner.manager.get(sandbox.default.session_id)
        except SessionNotFound:
            return False
        return session.state is not SessionState.CLOSED

    async def _close_session(self, session_id: str) -> None:
        with contextlib.suppress(SessionNotFound, SessionClosed):
            await self.runner.manager.close(session_id)

    def _ensure_reaper(self) -> None:
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.get_running_loop().create_task(self._reap_forever())

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(REAP_INTERVAL_S)
            for sandbox in [s for s in self._sandboxes.values() if not self._alive(s)]:
                try:
                    await self.kill(sandbox.id)
                except SandboxNotFound:
                    pass
                except Exception:  # keep reaping whatever one close did
                    log.exception("closing expired sandbox %s failed", sandbox.id)


def _timeout(timeout_s: int | None) -> float:
    if timeout_s is None:
        return DEFAULT_TIMEOUT_S
    if not 0 < timeout_s <= MAX_TIMEOUT_S:
        raise BadParameter(f"timeout must be between 1 and {MAX_TIMEOUT_S} seconds", "timeout")
    return timeout_s


# E2B's sandboxes start in /home/user, and code written for them expects it; lci's sandboxes
# mount the workdir there too (where they have a filesystem of their own).
HOME = "/home/user"
_TO_HOME = f"import os as _lci_os\n_lci_os.chdir({HOME!r})\ndel _lci_os"


async def _start_in_home(session: Session, context: Context) -> None:
    """Move the context's interpreter to HOME (where the sandbox has it); the cell is hidden from
    the client's execution count."""
    moved = await session.execute(_TO_HOME)
    context.hidden_cells += 1
    context.cwd = HOME if moved.error is None else session.info().workdir
