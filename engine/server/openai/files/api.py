"""OpenAI's Files API, the part code-interpreter programs use: upload with a `purpose`, retrieve,
download, delete, list. Uploaded files are what `file_ids` of a container or of a Responses
`container: {"type": "auto", "file_ids": [...]}` copy into the sandbox.

    POST   /v1/files                 upload (multipart: file, purpose, optional expires_after)
    GET    /v1/files                 list, paginated (after, limit, order, purpose)
    GET    /v1/files/{id}            retrieve
    GET    /v1/files/{id}/content    download
    DELETE /v1/files/{id}            delete
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import UploadFile

from engine.errors import BadParameter
from engine.server.http.errors import OpenAIError
from engine.server.http.openapi import errors
from engine.server.http.transfer import download
from engine.server.openai.files.store import PURPOSES, FileStore, clean_filename
from engine.server.openai.paging import Order, page
from engine.server.runtime.state import Owner, State

router = APIRouter(prefix="/v1/files", tags=["OpenAI-compatible"])

_COMMON = (401, 413, 500)
EXPIRY_S = (3600, 30 * 24 * 3600)  # the range OpenAI accepts for expires_after.seconds
_FILE_ID = {"file_id": "$response.body#/id"}
_CREATED: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The stored file",
        "links": {
            name: {"operationId": name, "parameters": _FILE_ID}
            for name in ("retrieve_file", "file_content", "delete_file_openai")
        },
    }
}
_UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "purpose": {"type": "string", "enum": sorted(PURPOSES)},
                        "expires_after[anchor]": {"type": "string", "enum": ["created_at"]},
                        "expires_after[seconds]": {
                            "type": "integer",
                            "minimum": EXPIRY_S[0],
                            "maximum": EXPIRY_S[1],
                        },
                    },
                    "required": ["file", "purpose"],
                }
            }
        },
    }
}


@router.post(
    "",
    operation_id="create_file",
    openapi_extra=_UPLOAD_BODY,
    responses={**_CREATED, **errors(OpenAIError, 400, *_COMMON)},
)
async def create_file(request: Request, state: State, owner: Owner) -> JSONResponse:
    """Store a file on the server's disk (within the upload and store size caps)."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise BadParameter("upload the file as multipart/form-data", "file")
    form = await request.form(max_files=1, max_fields=16)
    try:
        upload, purpose = form.get("file"), form.get("purpose")
        if not isinstance(upload, UploadFile):
            raise BadParameter("send the file's content as the multipart field 'file'", "file")
        if not isinstance(purpose, str) or not purpose:
            raise BadParameter("purpose is required", "purpose")
        expires = _expiry(form.get("expires_after[anchor]"), form.get("expires_after[seconds]"))
        name = clean_filename(upload.filename, "file")
        data = await upload.read()
    finally:
        await form.close()
    record = await state.part(FileStore).put(name, purpose, data, expires, owner)
    return JSONResponse(record.wire())


@router.get("", operation_id="list_files_openai", responses=errors(OpenAIError, 400, *_COMMON))
async def list_files(
    state: State,
    owner: Owner,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 10_000,
    order: Order = "desc",
    purpose: str | None = None,
) -> JSONResponse:
    records = sorted(state.part(FileStore).all(owner), key=lambda f: (f.created_at, f.id))
    records = [f for f in records if purpose is None or f.purpose == purpose]
    return JSONResponse(
        page(
            records,
            id_of=lambda f: f.id,
            wire=lambda f: f.wire(),
            after=after,
            limit=limit,
            order=order,
        )
    )


@router.get(
    "/{file_id}", operation_id="retrieve_file", responses=errors(OpenAIError, 404, *_COMMON)
)
async def retrieve_file(file_id: str, state: State, owner: Owner) -> JSONResponse:
    return JSONResponse(state.part(FileStore).get(file_id, owner).wire())


@router.get(
    "/{file_id}/content",
    operation_id="file_content",
    response_class=Response,
    responses={
        200: {
            "description": "The file's bytes",
            "content": {"application/octet-stream": {"schema": {"type": "string"}}},
        },
        **errors(OpenAIError, 404, *_COMMON),
    },
)
async def file_content(file_id: str, state: State, owner: Owner) -> Response:
    record = state.part(FileStore).get(file_id, owner)
    return download(await state.part(FileStore).read(file_id, owner), record.filename)


@router.delete(
    "/{file_id}", operation_id="delete_file_openai", responses=errors(OpenAIError, 404, *_COMMON)
)
async def delete_file(file_id: str, state: State, owner: Owner) -> JSONResponse:
    await state.part(FileStore).delete(file_id, owner)
    return JSONResponse({"id": file_id, "object": "file", "deleted": True})


def _expiry(anchor: object, seconds: object) -> int | None:
    if anchor is None and seconds is None:
        return None
    if anchor != "created_at":
        raise BadParameter("expires_after.anchor must be 'created_at'", "expires_after.anchor")
    if not isinstance(seconds, str) or not seconds.isdigit():
        raise BadParameter("expires_after.seconds must be a whole number", "expires_after.seconds")
    value = int(seconds)
    if not EXPIRY_S[0] <= value <= EXPIRY_S[1]:
        raise BadParameter(
            f"expires_after.seconds must be between {EXPIRY_S[0]} and {EXPIRY_S[1]}",
            "expires_after.seconds",
        )
    return value
