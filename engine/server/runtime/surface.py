"""What one compatible surface adds to the application, so that `app.py` can compose them without
knowing any surface's insides, and no surface needs to know another.

A surface is a folder under `engine/server/` with a `mount.py` that returns a `Surface`: its
routers, which of its paths take file uploads (the larger body limit), which path prefixes it
authorizes itself, the subdirectories of the state directory it keeps data in, its ASGI middleware, and what it keeps while the server runs (its own state,
attached to the shared `ServerState` by `running` and closed when the server stops)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field

from fastapi import APIRouter
from starlette.routing import BaseRoute
from starlette.types import ASGIApp

from engine.server.http.gate import Authorizer
from engine.server.runtime.state import ServerState


def _no_uploads(path: str) -> bool:
    return False


@asynccontextmanager
async def _nothing_kept(state: ServerState) -> AsyncIterator[None]:
    yield


@dataclass(frozen=True)
class Surface:
    name: str
    routers: tuple[APIRouter, ...] = ()
    # Plain ASGI routes, mounted after every router (a transport with its own app, such as MCP's).
    routes: tuple[BaseRoute, ...] = ()
    # Paths (without a trailing slash) whose request bodies are file uploads.
    is_upload: Callable[[str], bool] = _no_uploads
    # Path prefixes whose callers carry a credential of the surface's own instead of the API key,
    # each with the function the gate asks, before reading the body, whose the credential is.
    delegated: dict[str, Authorizer] = field(default_factory=dict)
    # ASGI middleware wrapped around the gate, innermost first.
    middleware: tuple[Callable[[ASGIApp], ASGIApp], ...] = ()
    # Subdirectories of the state directory the surface keeps data in: made private, or checked to
    # be, before the server starts (`core.state_dir.check_state_dir`).
    state_dirs: tuple[str, ...] = ()
    # Entered at startup after the shared state is built, left at shutdown before sessions close.
    running: Callable[[ServerState], AbstractAsyncContextManager[None]] = _nothing_kept
