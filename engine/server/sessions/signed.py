"""Signed file URLs over HTTP (the signing itself: `signing.py`):

    POST /v1/sessions/{id}/files/sign                   {path, operation, expires_in_s}
                                                        -> {url, method, path, expires_at}
    GET  /v1/signed/sessions/{id}/files/{path}?...      download that file, no API key
    PUT  /v1/signed/sessions/{id}/files/{path}?...      upload it (the body is the content;
    POST                                                or multipart with a `file` part)

The gate delegates `/v1/signed/sessions/` to `authorize`, which checks the signature before a byte
of the body is read; nothing else lives under that prefix, so a signature opens exactly the one
operation it was made for. The routes check it again (the gate's check is not their only guard).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any, Literal
from urllib.parse import parse_qsl, quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.types import Scope

from engine.core.session import Session
from engine.errors import BadParameter, Unauthorized
from engine.models import FileInfo, SignedUrl
from engine.server.http.auth import ANONYMOUS
from engine.server.http.errors import PlainError
from engine.server.http.openapi import errors
from engine.server.http.transfer import streamed_download
from engine.server.runtime.state import Owner, ServerState, State, get_state
from engine.server.sessions.signing import PREFIX, UrlSigner, expiry

router = APIRouter(tags=["Sessions"])

MAX_EXPIRES_IN_S = 7 * 24 * 3600
_CHUNK_BYTES = 1 << 20
_DOWNLOAD_200: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The file's bytes",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}
# On the signed routes the credential is the URL's query (operation, expires, signature), not the
# key.
_SIGNATURE_401: dict[int | str, dict[str, Any]] = {
    401: {"model": PlainError, "description": "Invalid or expired signature"},
    403: {"model": PlainError, "description": "Signed for the other operation"},
}
_UPLOAD_ERRORS = {**errors(PlainError, 400, 404, 409, 413, 500), **_SIGNATURE_401}


class SignRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    path: str = Field(description="The file, as the file routes take it.")
    operation: Literal["read", "write"] = Field(
        description="`read`: the URL downloads it (GET); `write`: it uploads it (PUT or POST)."
    )
    expires_in_s: int = Field(
        3600, ge=1, le=MAX_EXPIRES_IN_S, description="Seconds until the URL stops working."
    )


@router.post(
    "/v1/sessions/{session_id}/files/sign",
    response_model=SignedUrl,
    operation_id="sign_file_url",
    responses=errors(PlainError, 400, 404, 401, 500),
)
async def sign_file_url(
    session_id: str, body: SignRequest, request: Request, state: State, owner: Owner
) -> SignedUrl:
    """A URL that reads or writes one file of the session without the API key, until
    `expires_in_s` (at most 7 days) has passed. It is a bearer credential for that file: hand
    it only to whom may have it."""
    session = state.runner.owned(session_id, owner)
    path = session.tree.relative(body.path)
    expires = expiry(body.expires_in_s)
    signature = signer(state).signature(session.id, path, body.operation, expires)
    query = urlencode({"operation": body.operation, "expires": expires, "signature": signature})
    base = str(request.base_url).rstrip("/")
    return SignedUrl(
        url=f"{base}{PREFIX}{quote(session.id, safe='')}/files/{quote(path)}?{query}",
        method="GET" if body.operation == "read" else "PUT",
        path=path,
        expires_at=expires,
    )


@router.get(
    PREFIX + "{session_id}/files/{path:path}",
    response_class=Response,
    operation_id="download_signed_file",
    responses={**_DOWNLOAD_200, **errors(PlainError, 404, 409, 500), **_SIGNATURE_401},
)
async def download_signed_file(session_id: str, path: str, request: Request) -> Response:
    """Download the file a `read` URL was signed for (no API key: the query is the credential)."""
    session = _signed_session(request, session_id, path)
    return await streamed_download(session.read_file_chunks(path), path)


@router.put(
    PREFIX + "{session_id}/files/{path:path}",
    status_code=201,
    response_model=FileInfo,
    operation_id="upload_signed_file",
    responses=_UPLOAD_ERRORS,
)
async def upload_signed_file(session_id: str, path: str, request: Request) -> FileInfo:
    """Write the file a `write` URL was signed for: the request body is its content, or with
    `multipart/form-data` its `file` part."""
    session = _signed_session(request, session_id, path)
    size = await session.write_file_chunks(path, _content(request))
    return FileInfo(path=path, size=size, modified_at=time.time())


@router.post(
    PREFIX + "{session_id}/files/{path:path}",
    status_code=201,
    response_model=FileInfo,
    operation_id="post_signed_file",
    responses=_UPLOAD_ERRORS,
)
async def post_signed_file(session_id: str, path: str, request: Request) -> FileInfo:
    """The same as PUT, for an HTML form (`multipart/form-data` with a `file` part)."""
    return await upload_signed_file(session_id, path, request)


async def _content(request: Request) -> AsyncIterator[bytes]:
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        async for chunk in request.stream():
            yield chunk
        return
    form = await request.form()
    part = form.get("file")
    if part is None or isinstance(part, str):
        raise BadParameter("a multipart upload needs a `file` part", "file")
    while chunk := await part.read(_CHUNK_BYTES):
        yield chunk


def _signed_session(request: Request, session_id: str, path: str) -> Session:
    state = get_state(request)
    query = dict(request.query_params)
    signer(state).check(session_id, path, request.method, query, time.time())
    return state.runner.owned(session_id, state.runner.session_owner(session_id))


_SIGNED_METHODS = frozenset({"GET", "HEAD", "PUT", "POST"})


def signer(state: ServerState) -> UrlSigner:
    return state.part(UrlSigner)


def authorize(scope: Scope) -> str:
    """The gate's check of a request under `PREFIX`, before its body is read: the principal of
    the session whose file the URL was signed for (Unauthorized, Forbidden or SessionNotFound
    otherwise)."""
    if scope["method"] not in _SIGNED_METHODS:
        return ANONYMOUS  # no route serves it: the router answers 405, and nothing is reached
    state: ServerState = scope["app"].state.lci
    session_id, _, rest = scope["path"][len(PREFIX) :].partition("/")
    files, _, path = rest.partition("/")
    if not session_id or files != "files" or not path:
        raise Unauthorized("not a signed file URL")
    query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
    signer(state).check(session_id, path, scope["method"], query, time.time())
    return state.runner.session_owner(session_id)
