"""What the server holds while it runs and every surface shares: the session manager, the tool loop
wired to it, the client of the model server, the web tools. Built at startup, closed at shutdown
(which closes every session).

Each surface keeps its own state (stored conversations, containers, sandboxes) as a part attached
here when it starts (see `runtime.surface`): shared code never names a surface's state, and a
surface reads its own with `state.part(ItsState)`."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Annotated, TypeVar

from fastapi import Depends, Request

from engine.config import Settings
from engine.core.manager import SessionManager
from engine.models import SessionSpec
from engine.orchestrator import Orchestrator, UpstreamClient, WebTools
from engine.server.http.auth import principal_of
from engine.server.runtime.options import ServerOptions
from engine.server.runtime.proxy import Proxy
from engine.server.runtime.runner import ServerRunner
from engine.server.runtime.web import build_web_tools

Part = TypeVar("Part")


@dataclass
class ServerState:
    settings: Settings
    options: ServerOptions
    manager: SessionManager
    upstream: UpstreamClient
    orchestrator: Orchestrator
    runner: ServerRunner  # runs code for every surface, in sessions that belong to a principal
    proxy: Proxy
    web: WebTools | None = None  # the configured web tools
    keys: int = 1  # how many API keys (principals) the server accepts: per-key shares divide by it
    _parts: dict[type, object] = field(default_factory=dict)

    @property
    def web_available(self) -> frozenset[str]:
        return self.web.available if self.web is not None else frozenset()

    @property
    def defaults(self) -> SessionSpec:
        """The spec of a session started without one: the configured backend and limits."""
        return SessionSpec(backend=self.settings.backend, limits=self.settings.limits)

    def attach(self, part: object) -> None:
        """Keep a surface's own state, found again by its type."""
        self._parts[type(part)] = part

    def part(self, kind: type[Part]) -> Part:
        part = self._parts.get(kind)
        if not isinstance(part, kind):
            raise LookupError(f"no {kind.__name__} attached: its surface is not mounted")
        return part

    @classmethod
    def build(cls, settings: Settings, options: ServerOptions) -> ServerState:
        manager = SessionManager(settings) if not settings.ray_address else _cluster(settings)
        upstream = UpstreamClient.from_settings(settings)
        runner = ServerRunner(
            manager, SessionSpec(backend=settings.backend, limits=settings.limits)
        )
        web = build_web_tools(options)
        return cls(
            settings=settings,
            options=options,
            manager=manager,
            upstream=upstream,
            orchestrator=Orchestrator(upstream, runner, settings.llm_model, web=web, shell=runner),
            runner=runner,
            proxy=Proxy(settings),
            web=web,
        )

    async def aclose(self) -> None:
        """Close every session, then the clients of the model server."""
        try:
            await self.manager.close_all()
        finally:
            with contextlib.suppress(Exception):
                await self.upstream.aclose()
            with contextlib.suppress(Exception):
                await self.proxy.aclose()


def _cluster(settings: Settings) -> SessionManager:
    """Sessions on the Ray cluster (imported only then: a local server never loads Ray)."""
    from engine.cluster import ClusterSessionManager

    return ClusterSessionManager(settings)


def get_state(request: Request) -> ServerState:
    state: ServerState = request.app.state.lci
    return state


State = Annotated[ServerState, Depends(get_state)]


def get_owner(request: Request) -> str:
    return principal_of(request.scope)


Owner = Annotated[str, Depends(get_owner)]
