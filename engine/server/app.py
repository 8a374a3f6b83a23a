"""The ASGI application: routes of the three compatible surfaces and the session API, the gate
(auth, body size), error rendering, and the lifespan that starts the engine and, at shutdown, closes
every session."""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import Response
from pydantic import BaseModel

from engine.config import Settings
from engine.core.state_dir import check_state_dir
from engine.server.dashscope import mount as dashscope
from engine.server.e2b import mount as e2b
from engine.server.http import docs, errors
from engine.server.http.auth import KeyRing
from engine.server.http.errors import OpenAIError
from engine.server.http.gate import OPEN_PATHS, Gate
from engine.server.http.hosts import HostCheck
from engine.server.http.openapi import errors as error_statuses
from engine.server.http.telemetry import Telemetry
from engine.server.mcp import mount as mcp
from engine.server.openai import mount as openai
from engine.server.runtime import telemetry
from engine.server.runtime.options import ServerOptions
from engine.server.runtime.state import ServerState, State
from engine.server.runtime.surface import Surface
from engine.server.sessions import mount as sessions
from engine.server.ui import mount as ui

DESCRIPTION = """\
A local code interpreter for any LLM, behind three compatible surfaces:

* **OpenAI Responses** `POST /v1/responses` with `tools: [{"type": "code_interpreter"}]`
* **OpenAI Chat Completions** `POST /v1/chat/completions` with `enable_code_interpreter: true`
  (without it the request goes to the model server unchanged)
* **DashScope** `POST /api/v1/services/aigc/text-generation/generation` with
  `parameters.enable_code_interpreter: true`

with OpenAI's Containers and Files APIs (`/v1/containers`, `/v1/files`) beside them, a plain
session API (`/v1/sessions`) to run code directly, and an MCP server (streamable HTTP) at `/mcp`.
E2B's SDKs work against lci's E2B-compatible endpoints (`/v2/sandboxes` ..., not listed here:
their wire is E2B's). Send `Authorization: Bearer <key>`
when the server was started with an API key.
"""


class Health(BaseModel):
    status: str
    sessions: int


misc = APIRouter(tags=["Server"])


@misc.get("/health", response_model=Health)
async def health(state: State) -> Health:
    return Health(status="ok", sessions=state.manager.count())


@misc.get("/v1/models", responses=error_statuses(OpenAIError, 401, 502), response_model=None)
async def models(state: State) -> Response:
    """The model server's model list, passed through."""
    return await state.proxy.models()


def _declare_bearer_auth(app: FastAPI, delegated: tuple[str, ...]) -> None:
    """Say in the OpenAPI document what the gate enforces: a bearer token, except on open paths
    and under delegated prefixes (whose credential is their surface's own)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            document.setdefault("components", {})["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer"}
            }
            document["security"] = [{"bearer": []}]
            keyless = [p for p in document["paths"] if p in OPEN_PATHS or p.startswith(delegated)]
            for path in keyless:
                for operation in document["paths"][path].values():
                    operation["security"] = []
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _version() -> str:
    try:
        return importlib.metadata.version("lci")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def surfaces(options: ServerOptions, version: str) -> tuple[Surface, ...]:
    """Every surface the server offers, in the order their routes are matched and documented."""
    return (
        sessions.surface(),
        openai.surface(),
        dashscope.surface(),
        e2b.surface(),
        mcp.surface(options, version),
        ui.surface(options),  # last: its page is `/`, its assets `/ui/...`
    )


def surface_finder(mounted: tuple[Surface, ...]) -> Callable[[str], str]:
    """The name of the surface a path belongs to ("server" for the server's own routes), by the
    longest static prefix of the surfaces' routes."""
    prefixes: dict[str, str] = {}
    for surface in mounted:
        routes = [*surface.routes, *(r for router in surface.routers for r in router.routes)]
        for route in routes:
            prefix = getattr(route, "path", "").split("{")[0]
            if len(prefix) > 1:
                prefixes.setdefault(prefix, surface.name)
    ordered = sorted(prefixes.items(), key=lambda item: -len(item[0]))

    @functools.lru_cache(maxsize=4096)
    def find(path: str) -> str:
        return next((name for prefix, name in ordered if path.startswith(prefix)), "server")

    return find


def create_app(settings: Settings | None = None, options: ServerOptions | None = None) -> FastAPI:
    """The application. Raises UnsafeStateDir when the state directory, or anything in it, could
    have been prepared by another user (checked now, before anything reads from it)."""
    settings = settings or Settings()
    options = options or ServerOptions()
    mounted = surfaces(options, _version())
    check_state_dir(settings.state_dir, tuple(d for s in mounted for d in s.state_dirs))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = ServerState.build(settings, options)
        state.keys = len(keys.keys) if keys is not None else 1
        app.state.lci = state
        try:
            async with contextlib.AsyncExitStack() as running:
                await running.enter_async_context(telemetry.observing(state, app.state))
                for surface in mounted:
                    await running.enter_async_context(surface.running(state))
                yield
        finally:
            await state.aclose()

    app = FastAPI(
        title="lci",
        description=DESCRIPTION,
        version=_version(),
        lifespan=lifespan,
        docs_url=None,  # served from local assets instead of a CDN: http/docs.py
        redoc_url=None,
    )
    docs.install(app)

    def body_limit(path: str) -> int:
        path = path.rstrip("/")
        if any(surface.is_upload(path) for surface in mounted):
            return options.max_upload_bytes
        return options.max_body_bytes

    keys = KeyRing.load(settings.api_key, settings.api_key_file)
    app.add_middleware(
        Gate,
        keys=keys,
        hosts=HostCheck(options.host, options.allowed_hosts),
        body_limit=body_limit,
        body_timeout_s=options.body_timeout_s,
        delegated={p: a for surface in mounted for p, a in surface.delegated.items()},
    )
    app.add_middleware(Telemetry, surface_of=surface_finder(mounted))
    for surface in mounted:  # outside the gate: it sees where a request goes
        for middleware in surface.middleware:
            app.add_middleware(middleware)
    if keys is not None:
        _declare_bearer_auth(app, tuple(p for surface in mounted for p in surface.delegated))
    errors.install(app)
    for surface in mounted:
        for router in surface.routers:
            app.include_router(router)
    app.include_router(misc)
    app.include_router(telemetry.router)
    for surface in mounted:
        app.router.routes.extend(surface.routes)
    return app
