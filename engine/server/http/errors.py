"""Errors on the wire: the one table from error code to HTTP status, and the body each surface uses.

Every failure the server reports starts as an `LCIError` code (or an orchestrator `ErrorEvent` code)
and goes through `status_for`; only the body's shape depends on the surface the request came in on
(docs/conformance/common.md, errors):

    plain      /v1/sessions/...         {"error": {"code", "message", "param"}}
    responses  /v1/responses            {"error": {"message", "type", "param", "code"}}
    chat       /v1/chat/completions     the same plus top-level "id" and "request_id"
    dashscope  /api/v1/services/...     {"code", "message", "request_id"}
    e2b        /sandboxes, /v2/sandboxes, and sandbox-addressed requests   {"code": <status>, "message"}

The classes themselves live in `engine.errors`, the one hierarchy.
"""

from __future__ import annotations

import logging
import math
import uuid
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.routing import Match

from engine.errors import LCIError, UpstreamError
from engine.server.http.sse import ClientGone

log = logging.getLogger(__name__)

Surface = Literal["plain", "responses", "chat", "dashscope", "e2b"]

# Where E2B's clients send requests: its control plane, and (after `engine.server.e2b.routing`
# moved them there) the requests addressed to one sandbox.
E2B_PREFIXES = ("/sandboxes", "/v2/sandboxes", "/e2b-sandbox/")


STATUS: dict[str, int] = {
    "invalid_request": 400,
    "file_access": 400,
    "command_failed": 400,
    "container_expired": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "forbidden_host": 403,
    "not_found": 404,
    "session_not_found": 404,
    "file_not_found": 404,
    "command_not_found": 404,
    "snapshot_not_found": 404,
    "response_not_found": 404,
    "container_not_found": 404,
    "sandbox_not_found": 404,
    "method_not_allowed": 405,
    "request_timeout": 408,
    "session_busy": 409,
    "session_closed": 409,
    "session_lost": 410,
    "snapshots_unavailable": 409,
    "payload_too_large": 413,
    "capacity_exceeded": 429,
    "internal_error": 500,
    "sandbox_error": 500,
    "protocol_error": 500,
    "not_implemented": 501,
    "upstream_error": 502,
    "sandbox_not_running": 502,
    "sandbox_start_failed": 503,
    "backend_unavailable": 503,
    "server_unavailable": 503,
    "image_not_found": 503,
    "deadline_exceeded": 504,
}

_OPENAI_CODES = {
    "invalid_request": "invalid_parameter_error",
    "unauthorized": "invalid_api_key",
    "capacity_exceeded": "rate_limit_exceeded",
    "response_not_found": "previous_response_not_found",
}

_DASHSCOPE_CODES = {
    400: "InvalidParameter",
    401: "InvalidApiKey",
    403: "AccessDenied",
    404: "ModelNotFound",
    405: "InvalidParameter",
    409: "Conflict",
    413: "RequestTooLarge",
    429: "Throttling",
}


# The error bodies as the OpenAPI document describes them (`error_body` builds them).


class PlainErrorDetail(BaseModel):
    code: str = Field(description="Stable error code, e.g. session_not_found, session_busy.")
    message: str
    param: str | None = None


class PlainError(BaseModel):
    """Error body of the session API."""

    error: PlainErrorDetail


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIError(BaseModel):
    """OpenAI error body (Responses API; Chat Completions adds `id` and `request_id`)."""

    error: OpenAIErrorDetail
    id: str | None = None
    request_id: str | None = None


class DashScopeError(BaseModel):
    """DashScope native error body."""

    code: str = Field(description="InvalidParameter, InvalidApiKey, Throttling, InternalError ...")
    message: str
    request_id: str


def status_for(code: str, upstream_status: int | None = None) -> int:
    """The HTTP status of an error code. A model server's own 4xx is passed on (its client made the
    mistake); any other model server failure is a 502."""
    if code == "upstream_error" and upstream_status is not None and 400 <= upstream_status < 500:
        return upstream_status
    return STATUS.get(code, 500)


OPENAI_PREFIXES = ("/v1/responses", "/v1/models", "/v1/containers", "/v1/files")


def surface_of(path: str) -> Surface:
    if path.startswith(E2B_PREFIXES):
        return "e2b"
    if path.startswith("/api/v1/"):
        return "dashscope"
    if path.endswith("/chat/completions"):
        return "chat"
    if path.endswith("/responses") or path.startswith(OPENAI_PREFIXES):
        return "responses"  # the OpenAI shape
    return "plain"


def openai_code(code: str) -> str:
    return _OPENAI_CODES.get(code, code)


def error_body(
    surface: Surface,
    code: str,
    message: str,
    status: int,
    *,
    param: str | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    """The JSON body of an error on `surface` (also the payload of in-stream error events)."""
    request_id = request_id or str(uuid.uuid4())
    if surface == "dashscope":
        wire = _DASHSCOPE_CODES.get(
            status, "InternalError" if status >= 500 else "InvalidParameter"
        )
        return {"code": wire, "message": message, "request_id": request_id}
    if surface == "plain":
        return {"error": {"code": code, "message": message, "param": param}}
    if surface == "e2b":  # E2B's `Error` schema; its SDKs read `message`
        return {"code": status, "message": message}
    error = {
        "message": message,
        "type": "invalid_request_error" if status < 500 else "server_error",
        "param": param,
        "code": openai_code(code),
    }
    if surface == "chat":
        return {"error": error, "id": f"chatcmpl-{request_id}", "request_id": request_id}
    return {"error": error}


def error_response(
    surface: Surface, code: str, message: str, status: int, param: str | None = None
) -> JSONResponse:
    return JSONResponse(error_body(surface, code, message, status, param=param), status)


def exception_response(path: str, exc: LCIError) -> JSONResponse:
    status = status_for(exc.code, exc.status if isinstance(exc, UpstreamError) else None)
    param = getattr(exc, "param", None)
    response = error_response(surface_of(path), exc.code, exc.message, status, param)
    retry_after = getattr(exc, "retry_after_s", None)
    if retry_after is not None:  # a cap, or a backend away: say when to come back (RFC 9110 10.2.3)
        response.headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return response


def describe_validation(error: Any) -> tuple[str, str | None]:
    """A request validation error as (message, param). `param` names a field of the body, never
    a character position of broken JSON nor a union member's class name."""
    message = str(error.get("msg", "invalid request"))
    if error.get("type") == "json_invalid":
        where = error.get("loc", ("body", "?"))[-1]
        reason = (error.get("ctx") or {}).get("error", "")
        return f"the body is not valid JSON (at character {where}: {reason})", None
    # Union members appear in `loc` under their class names ("MessagesInput"): not field names.
    loc = [
        str(part)
        for part in error.get("loc", ())
        if part not in ("body", "query") and not (isinstance(part, str) and part[:1].isupper())
    ]
    if not loc:
        missing = error.get("type") == "missing"
        return ("a JSON body is required" if missing else f"body: {message}"), None
    param = ".".join(loc)
    return f"{param}: {message}", param


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path (Starlette names only the first route's)."""
    methods: set[str] = set()
    for route in request.app.routes:
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return sorted(methods)


def install(app: FastAPI) -> None:
    """Render every failure, including FastAPI's own (validation, unknown route), in the shape of
    the surface the request came in on."""

    async def lci_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, LCIError)
        return exception_response(request.url.path, exc)

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        message, param = describe_validation(exc.errors()[0] if exc.errors() else {})
        return error_response(surface_of(request.url.path), "invalid_request", message, 400, param)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(
            exc.status_code, "invalid_request" if exc.status_code < 500 else "internal_error"
        )
        response = error_response(
            surface_of(request.url.path), code, str(exc.detail), exc.status_code
        )
        if exc.headers:
            response.headers.update(exc.headers)
        if exc.status_code == 405:
            response.headers["Allow"] = ", ".join(_allowed_methods(request))
        return response

    async def client_gone(request: Request, exc: Exception) -> Response:
        return Response(status_code=499)  # nobody is left to read it

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error serving %s %s", request.method, request.url.path)
        return error_response(
            surface_of(request.url.path), "internal_error", "internal server error", 500
        )

    app.add_exception_handler(ClientGone, client_gone)
    app.add_exception_handler(LCIError, lci_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)
