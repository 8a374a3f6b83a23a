"""The OpenAPI description of what the routes answer: error bodies per surface (errors.error_body
builds them) and the statuses each kind of route can return."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


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


_DESCRIPTIONS = {
    400: "Invalid request",
    401: "Missing or wrong API key",
    404: "Not found",
    409: "Session busy or closed",
    413: "Request body too large",
    429: "Too many sessions or the model server's rate limit",
    500: "Internal error",
    502: "The model server failed",
    503: "A sandbox could not be started",
    504: "The request's deadline passed",
}


# One server-sent event, as OpenAPI 3.1 tools read a text/event-stream schema: per event.
SSE_EVENT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "event": {"type": "string"},
        "data": {"type": "string"},
        "id": {"type": "string"},
        "retry": {"type": "integer"},
    },
}


def errors(model: type[BaseModel], *statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": model, "description": _DESCRIPTIONS[status]} for status in statuses}


def _streamed(description: str, **extra: Any) -> dict[int | str, dict[str, Any]]:
    return {
        200: {
            "description": description,
            "content": {
                "application/json": {"schema": {"type": "object"}},
                "text/event-stream": {"schema": SSE_EVENT},
            },
            **extra,
        }
    }


_LOOP_STATUSES = (400, 401, 404, 409, 413, 429, 500, 502, 503, 504)

CHAT_RESPONSES = {
    **_streamed("A chat.completion, or chat.completion.chunk events when streaming"),
    **errors(OpenAIError, *_LOOP_STATUSES),
}
RESPONSES_RESPONSES = {
    **_streamed("A response object, or response.* events when streaming"),
    **errors(OpenAIError, *_LOOP_STATUSES),
}
DASHSCOPE_RESPONSES = {
    **_streamed("A generation result, or DashScope SSE events when streaming"),
    **errors(DashScopeError, *_LOOP_STATUSES),
}
