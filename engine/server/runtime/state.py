"""What the server holds while it runs: the session manager, the tool loop wired to it, the client
of the model server, and the stored Responses conversations. Built at startup, closed at shutdown
(which closes every session)."""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from engine.config import Settings
from engine.core.manager import SessionManager
from engine.models import SessionSpec
from engine.orchestrator import Orchestrator, UpstreamClient, WebTools
from engine.server.e2b.registry import E2BSandboxes
from engine.server.http.auth import principal_of
from engine.server.openai.containers.registry import ContainerRegistry
from engine.server.openai.files.store import FileStore
from engine.server.runtime.options import ServerOptions
from engine.server.runtime.proxy import Proxy
from engine.server.runtime.runner import Containers
from engine.server.runtime.web import build_web_tools


@dataclass
class Stored:
    """A finished Responses conversation: every message so far, and its container (session)."""

    messages: list[dict[str, Any]]
    container: str | None
    owner: str = ""  # the principal that made it; for any other it does not exist


class ResponseStore:
    """The last `capacity` responses, for `previous_response_id`."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, Stored] = OrderedDict()

    def put(self, response_id: str, stored: Stored) -> None:
        if self.capacity <= 0:
            return
        self._items[response_id] = stored
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def get(self, response_id: str) -> Stored | None:
        return self._items.get(response_id)


@dataclass
class ServerState:
    settings: Settings
    options: ServerOptions
    manager: SessionManager
    upstream: UpstreamClient
    orchestrator: Orchestrator
    containers: Containers
    proxy: Proxy
    store: ResponseStore
    files: FileStore
    registry: ContainerRegistry
    e2b: E2BSandboxes
    web: WebTools | None = None  # the configured web tools

    @property
    def web_available(self) -> frozenset[str]:
        return self.web.available if self.web is not None else frozenset()

    @classmethod
    def build(cls, settings: Settings, options: ServerOptions) -> ServerState:
        manager = SessionManager(settings) if not settings.ray_address else _cluster(settings)
        upstream = UpstreamClient.from_settings(settings)
        containers = Containers(
            manager, SessionSpec(backend=settings.backend, limits=settings.limits)
        )
        files = FileStore(
            settings.state_dir / "files",
            max_file_bytes=options.max_upload_bytes,
            max_total_bytes=options.max_file_store_bytes,
        )
        web = build_web_tools(options)
        return cls(
            settings=settings,
            options=options,
            manager=manager,
            upstream=upstream,
            orchestrator=Orchestrator(upstream, containers, settings.llm_model, web=web),
            containers=containers,
            proxy=Proxy(settings),
            store=ResponseStore(options.stored_responses),
            files=files,
            registry=ContainerRegistry(manager, containers, files, settings),
            e2b=E2BSandboxes(containers),
            web=web,
        )

    async def aclose(self) -> None:
        """Close every session, then the clients of the model server."""
        try:
            await self.registry.aclose()
            await self.e2b.aclose()
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
