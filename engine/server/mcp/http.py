"""MCP over streamable HTTP at `/mcp` of `lci serve`, sharing the server's session manager, limits,
capacity and API key (the gate in front of every route checks the bearer token here too).

The transport is stateless: every POST is served on its own, in the task of that request, so a
client that disconnects mid-call cancels its tool call, and the session stops the running cell.
What persists between calls is the lci session, named by the `session_id` tool argument, not an MCP
transport session (which would keep a call running after its client went away).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.routing import BaseRoute

from engine.models import SessionSpec
from engine.server.mcp.tools import build_mcp_server
from engine.server.mcp.workspace import Workspace, WorkspaceRef
from engine.server.runtime.options import ServerOptions
from engine.server.runtime.state import ServerState

PATH = "/mcp"


class McpEndpoint:
    def __init__(self, options: ServerOptions, version: str = "") -> None:
        self.options = options
        self._ref = WorkspaceRef()
        self.server = build_mcp_server(self._ref, version=version)
        # Built here so its routes can join the host app; its session manager runs in `running`.
        # For a loopback host the SDK turns DNS-rebinding protection on (Host and Origin checked).
        app = self.server.streamable_http_app(
            streamable_http_path=PATH,
            stateless_http=True,
            host=options.host,
            max_request_body_size=options.max_body_bytes,
        )
        self.routes: list[BaseRoute] = list(app.routes)

    @asynccontextmanager
    async def running(self, state: ServerState) -> AsyncIterator[None]:
        """Serve while the host app runs: the SDK's session manager needs the host's lifespan."""
        settings = state.settings
        self._ref.set(
            Workspace(
                state.manager,
                state.runner.create,
                SessionSpec(backend=settings.backend, limits=settings.limits),
                auth=bool(settings.api_key),
                inline_bytes=self.options.mcp_inline_bytes,
                fork=lambda sid, owner, n, snap: state.runner.fork(
                    sid, owner, n=n, snapshot_id=snap
                ),
            )
        )
        try:
            async with self.server.session_manager.run():
                yield
        finally:
            self._ref.set(None)
