"""MCP over stdio (`lci mcp`): one local client, its own session manager, every session closed when
the client closes the stream or the process is told to stop (SIGTERM, SIGINT).

The SDK points fds 0 and 1 away from the protocol stream while it serves, and sandboxes get
/dev/null as stdin, so code run in a session can neither read nor forge the MCP stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal

from engine.config import Settings
from engine.core.manager import SessionManager
from engine.models import SessionSpec
from engine.server.mcp_tools import build_mcp_server
from engine.server.mcp_workspace import MIB, Workspace, WorkspaceRef


async def serve_stdio(settings: Settings, version: str = "", inline_bytes: int = 4 * MIB) -> int:
    """Serve until the client closes stdin or a stop signal arrives; 0 after closing everything."""
    ref = WorkspaceRef()
    server = build_mcp_server(ref, version=version)
    loop = asyncio.get_running_loop()
    async with SessionManager(settings) as manager:
        defaults = SessionSpec(backend=settings.backend, limits=settings.limits)
        ref.set(Workspace(manager, manager.create, defaults, inline_bytes=inline_bytes))
        serving = asyncio.ensure_future(server.run_stdio_async())
        for signum in (signal.SIGTERM, signal.SIGINT):
            # A stop signal ends serving as a closed stdin does: sessions are closed either way.
            loop.add_signal_handler(signum, serving.cancel)
        try:
            with contextlib.suppress(asyncio.CancelledError):
                await serving
        finally:
            ref.set(None)
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
    return 0
