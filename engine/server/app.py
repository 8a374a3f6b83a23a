"""The ASGI application: routes of the three compatible surfaces and the session API, the gate
(auth, body size), error rendering, and the lifespan that starts the engine and, at shutdown, closes
every session."""

from __future__ import annotations

import importlib.metadata
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import Response
from pydantic import BaseModel

from engine.config import Settings
from engine.server.dashscope import api as dashscope
from engine.server.e2b import mount as e2b
from engine.server.http import errors
from engine.server.http.auth import KeyRing
from engine.server.http.gate import OPEN_PATHS, Gate
from engine.server.http.hosts import HostCheck
from engine.server.http.openapi import OpenAIError
from engine.server.http.openapi import errors as error_statuses
from engine.server.mcp.http import McpEndpoint
from engine.server.openai import chat
from engine.server.openai.containers import api as containers_api
from engine.server.openai.containers import files as container_files_api
from engine.server.openai.files import api as files_api
from engine.server.openai.responses import api as responses
from engine.server.runtime.options import ServerOptions
from engine.server.runtime.state import ServerState, State
from engine.server.sessions import api as sessions_api

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


def _declare_bearer_auth(app: FastAPI) -> None:
    """Say in the OpenAPI document what the gate enforces: a bearer token, except on open paths."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            document.setdefault("components", {})["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer"}
            }
            document["security"] = [{"bearer": []}]
            for path in OPEN_PATHS & set(document["paths"]):
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


def create_app(settings: Settings | None = None, options: ServerOptions | None = None) -> FastAPI:
    settings = settings or Settings()
    options = options or ServerOptions()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = ServerState.build(settings, options)
        app.state.lci = state
        try:
            async with mcp.running(state):
                yield
        finally:
            await state.aclose()

    app = FastAPI(title="lci", description=DESCRIPTION, version=_version(), lifespan=lifespan)
    mcp = McpEndpoint(options, _version())
    upload_prefixes = ("/v1/sessions/", "/v1/containers/")

    def body_limit(path: str) -> int:
        path = path.rstrip("/")
        if (path.startswith(upload_prefixes) and path.endswith("/files")) or path in (
            "/v1/files",
            e2b.PREFIX + "/files",
        ):
            return options.max_upload_bytes
        return options.max_body_bytes

    keys = KeyRing.load(settings.api_key, settings.api_key_file)
    app.add_middleware(
        Gate,
        keys=keys,
        hosts=HostCheck(options.host, options.allowed_hosts),
        body_limit=body_limit,
        body_timeout_s=options.body_timeout_s,
        delegated=(e2b.PREFIX + "/",),
    )
    app.add_middleware(e2b.SandboxRouting)  # outermost: the gate sees where a request goes
    if keys is not None:
        _declare_bearer_auth(app)
    errors.install(app)
    for router in (
        sessions_api.router,
        responses.router,
        containers_api.router,
        container_files_api.router,
        files_api.router,
        chat.router,
        dashscope.router,
        *e2b.ROUTERS,
        misc,
    ):
        app.include_router(router)
    app.router.routes.extend(mcp.routes)
    return app
