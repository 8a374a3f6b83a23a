"""MCP over stdio (`lci mcp`): one local client, its own session manager, every session closed when
the client closes the stream or the process is told to stop (SIGTERM, SIGINT).

The SDK points fds 0 and 1 away from the protocol stream while it serves, and sandboxes get
/dev/null as stdin, so code run in a session can neither read nor forge the MCP stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from typing import Any

from engine.config import Settings
from engine.core.manager import SessionManager
from engine.models import MIB, SessionSpec
from engine.server.mcp.tools import build_mcp_server
from engine.server.mcp.workspace import Workspace, WorkspaceRef

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


async def serve_stdio(settings: Settings, version: str = "", inline_bytes: int = 4 * MIB) -> int:
    """Serve until the client closes stdin or a stop signal arrives; 0 after closing everything."""
    ref = WorkspaceRef()
    server = build_mcp_server(ref, version=version)
    async with SessionManager(settings) as manager:
        defaults = SessionSpec(backend=settings.backend, limits=settings.limits)
        ref.set(Workspace(manager, manager.create, defaults, inline_bytes=inline_bytes))
        serving = asyncio.ensure_future(server.run_stdio_async())
        try:
            await _until_done_or_stopped(serving)
        finally:
            ref.set(None)
    # Every session is closed now. After a signal the SDK's reader thread may still be blocked
    # reading stdin: nothing interrupts it, and the interpreter would wait for it at exit.
    if not serving.done():
        sys.stderr.flush()
        os._exit(0)
    return 0


async def _until_done_or_stopped(serving: asyncio.Future[None]) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in _STOP_SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    stopped = asyncio.ensure_future(stop.wait())
    either: set[asyncio.Future[Any]] = {serving, stopped}
    try:
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for signum in _STOP_SIGNALS:
            loop.remove_signal_handler(signum)
        stopped.cancel()
    if serving.done():
        with contextlib.suppress(asyncio.CancelledError):
            serving.result()
        return
    serving.cancel()  # in-flight calls are cancelled: their sessions stop the running cells
    await asyncio.wait({serving}, timeout=2)
