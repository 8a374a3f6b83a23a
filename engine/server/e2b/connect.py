"""connect-rpc with the JSON codec, as envd speaks it and E2B's SDKs call it.

Unary calls: a JSON body in, a JSON body out; an error is an HTTP status with
`{"code": "not_found", "message": ...}` (the SDKs read `code`; without it they fall back to the
status, where 404 would mean "unimplemented"). Streaming calls (`application/connect+json`): the
request and the response are envelopes (1 flag byte, a 4-byte big-endian length, the JSON); the
response ends with an end-of-stream envelope (flag 0x02) holding `{}` or `{"error": ...}`, its
HTTP status 200 whatever happened.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from engine.errors import BadParameter, LCIError, PayloadTooLarge
from engine.server.http.errors import status_for

STREAM_MEDIA = "application/connect+json"
END_STREAM = 0x02
_COMPRESSED = 0x01
_HEADER = struct.Struct(">BI")
MAX_MESSAGE = 16 << 20

# connect's codes by the HTTP status lci's one table gives each error code.
_CODES = {
    400: "invalid_argument",
    401: "unauthenticated",
    403: "permission_denied",
    404: "not_found",
    408: "deadline_exceeded",
    409: "failed_precondition",
    410: "unavailable",
    413: "resource_exhausted",
    429: "resource_exhausted",
    501: "unimplemented",
    502: "unavailable",
    503: "unavailable",
    504: "deadline_exceeded",
}
# and back: the HTTP status connect gives each code (unary errors).
_STATUSES = {
    "invalid_argument": 400,
    "failed_precondition": 400,
    "unauthenticated": 401,
    "permission_denied": 403,
    "not_found": 404,
    "resource_exhausted": 429,
    "unimplemented": 501,
    "unavailable": 503,
    "deadline_exceeded": 504,
}


def code_of(exc: LCIError) -> str:
    return _CODES.get(status_for(exc.code), "internal")


def error_body(exc: LCIError) -> dict[str, str]:
    return {"code": code_of(exc), "message": exc.message}


def error_response(exc: LCIError) -> JSONResponse:
    """A unary call's error."""
    body = error_body(exc)
    return JSONResponse(body, status_code=_STATUSES.get(body["code"], 500))


def error_reply(status: int, code: str, message: str) -> JSONResponse:
    """A unary call's error with a connect code of its own (`already_exists`, say)."""
    return JSONResponse({"code": code, "message": message}, status_code=status)


def envelope(message: dict[str, Any], flags: int = 0) -> bytes:
    data = json.dumps(message, separators=(",", ":")).encode()
    return _HEADER.pack(flags, len(data)) + data


def end_stream(error: LCIError | None = None) -> bytes:
    return envelope({} if error is None else {"error": error_body(error)}, END_STREAM)


def deadline_exceeded(what: str) -> bytes:
    """The end of a stream whose call's deadline passed (what envd's connect-go answers then)."""
    body = {"code": "deadline_exceeded", "message": f"{what}: the call's deadline passed"}
    return envelope({"error": body}, END_STREAM)


def unwrap(data: bytes) -> Iterator[dict[str, Any]]:
    """The messages of a streaming request's body, in order."""
    at = 0
    while at < len(data):
        if len(data) - at < _HEADER.size:
            raise BadParameter("a truncated connect envelope", "body")
        flags, size = _HEADER.unpack_from(data, at)
        at += _HEADER.size
        if flags & _COMPRESSED:
            raise BadParameter("compressed connect messages are not accepted", "body")
        if len(data) - at < size:
            raise BadParameter("a truncated connect envelope", "body")
        if not flags & END_STREAM:
            yield _json(data[at : at + size])
        at += size


async def message(request: Request) -> dict[str, Any]:
    """The one request message of a unary or server-streaming call."""
    body = await request.body()
    if len(body) > MAX_MESSAGE:
        raise PayloadTooLarge(f"a connect message is limited to {MAX_MESSAGE} bytes")
    if request.headers.get("content-type", "").startswith("application/connect+"):
        messages = list(unwrap(body))
        if len(messages) != 1:
            raise BadParameter("a server-streaming call takes exactly one message", "body")
        return messages[0]
    return _json(body) if body else {}


def _json(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError as exc:
        raise BadParameter(f"the message is not JSON: {exc}", "body") from exc
    if not isinstance(value, dict):
        raise BadParameter("the message must be a JSON object", "body")
    return value


def timeout_s(request: Request) -> float | None:
    """The call's deadline (`Connect-Timeout-Ms`), None when it has none."""
    raw = request.headers.get("connect-timeout-ms")
    if not raw:
        return None
    try:
        ms = int(raw)
    except ValueError:
        raise BadParameter("Connect-Timeout-Ms must be an integer", "connect-timeout-ms") from None
    return ms / 1000 if ms > 0 else None
