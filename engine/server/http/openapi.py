"""The OpenAPI description of what the routes answer: the statuses each kind of route can return,
with the error body model of its surface (`errors.py` defines them beside the code that builds
them), and how a streamed answer is described."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

_DESCRIPTIONS = {
    400: "Invalid request",
    401: "Missing or wrong API key",
    403: "The credential is valid, but not for this request",
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


def streamed(description: str, **extra: Any) -> dict[int | str, dict[str, Any]]:
    """A 200 that is JSON, or server-sent events when the request asked to stream."""
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


# What a request that runs the tool loop can answer besides its 200.
LOOP_STATUSES = (400, 401, 404, 409, 413, 429, 500, 502, 503, 504)
