"""OpenAI's container files API: the files of a container's working directory, with `cfile_` ids.

    POST   /v1/containers/{id}/files                   multipart `file`, or JSON {"file_id"}
    GET    /v1/containers/{id}/files                   list, paginated (after, limit, order)
    GET    /v1/containers/{id}/files/{file_id}         retrieve
    GET    /v1/containers/{id}/files/{file_id}/content download
    DELETE /v1/containers/{id}/files/{file_id}         delete (from the working directory too)

Files the code wrote are listed with `source: "assistant"`, uploads with `source: "user"`.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import UploadFile

from engine.errors import BadParameter, FileNotFound
from engine.server.http.errors import OpenAIError
from engine.server.http.openapi import errors
from engine.server.http.transfer import download
from engine.server.openai.containers.registry import Container, ContainerFile, ContainerRegistry
from engine.server.openai.files.store import FileStore, clean_filename
from engine.server.openai.paging import Order, page
from engine.server.runtime.state import Owner, State

router = APIRouter(prefix="/v1/containers/{container_id}/files", tags=["OpenAI-compatible"])

_COMMON = (401, 413, 500)
_FILE = {"container_id": "$request.path.container_id", "file_id": "$response.body#/id"}
_CREATED: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The file, in the container",
        "links": {
            name: {"operationId": name, "parameters": _FILE}
            for name in (
                "retrieve_container_file",
                "container_file_content",
                "delete_container_file",
            )
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
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {"file_id": {"type": "string"}},
                    "required": ["file_id"],
                }
            },
        },
    }
}


@router.post(
    "",
    operation_id="create_container_file",
    openapi_extra=_UPLOAD_BODY,
    responses={**_CREATED, **errors(OpenAIError, 400, 404, *_COMMON)},
)
async def create_container_file(
    container_id: str, request: Request, state: State, owner: Owner
) -> JSONResponse:
    """Put a file into the container: uploaded (multipart `file`) or copied from `/v1/files`
    (JSON `file_id`). It lands at the top of the working directory under its file name."""
    await state.part(ContainerRegistry).sweep()
    container = state.part(ContainerRegistry).get(container_id, owner=owner)
    state.part(ContainerRegistry).session(
        container
    )  # an expired container takes no files, read nothing first
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        name, data = await _upload(request)
    else:
        file_id = await _file_id(request)
        try:
            record = state.part(FileStore).get(file_id, owner)
        except FileNotFound as exc:
            raise FileNotFound(exc.message, "file_id") from None
        name, data = record.filename, await state.part(FileStore).read(file_id, owner)
    item = await state.part(ContainerRegistry).add_file(container, name, data, source="user")
    return JSONResponse(item.wire(container))


@router.get(
    "", operation_id="list_container_files", responses=errors(OpenAIError, 400, 404, *_COMMON)
)
async def list_container_files(
    container_id: str,
    state: State,
    owner: Owner,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    order: Order = "desc",
) -> JSONResponse:
    container = await _container(state, container_id, owner)
    files = await state.part(ContainerRegistry).files(container)
    return JSONResponse(
        page(
            files,
            id_of=lambda f: f.id,
            wire=lambda f: f.wire(container),
            after=after,
            limit=limit,
            order=order,
        )
    )


@router.get(
    "/{file_id}",
    operation_id="retrieve_container_file",
    responses=errors(OpenAIError, 400, 404, *_COMMON),
)
async def retrieve_container_file(
    container_id: str, file_id: str, state: State, owner: Owner
) -> JSONResponse:
    container = await _container(state, container_id, owner)
    return JSONResponse(
        (await state.part(ContainerRegistry).file(container, file_id)).wire(container)
    )


@router.get(
    "/{file_id}/content",
    operation_id="container_file_content",
    response_class=Response,
    responses={
        200: {
            "description": "The file's bytes",
            "content": {"application/octet-stream": {"schema": {"type": "string"}}},
        },
        **errors(OpenAIError, 400, 404, *_COMMON),
    },
)
async def container_file_content(
    container_id: str, file_id: str, state: State, owner: Owner
) -> Response:
    container = await _container(state, container_id, owner)
    item = await state.part(ContainerRegistry).file(container, file_id)
    return download(await state.part(ContainerRegistry).read_file(container, item), item.path)


@router.delete(
    "/{file_id}",
    operation_id="delete_container_file",
    responses=errors(OpenAIError, 400, 404, *_COMMON),
)
async def delete_container_file(
    container_id: str, file_id: str, state: State, owner: Owner
) -> JSONResponse:
    container = await _container(state, container_id, owner)
    item: ContainerFile = await state.part(ContainerRegistry).file(container, file_id)
    await state.part(ContainerRegistry).delete_file(container, item)
    return JSONResponse({"id": file_id, "object": "container.file.deleted", "deleted": True})


async def _container(state: State, container_id: str, owner: str) -> Container:
    await state.part(ContainerRegistry).sweep()
    container = state.part(ContainerRegistry).get(container_id, owner=owner)
    state.part(ContainerRegistry).session(container)
    return container


async def _upload(request: Request) -> tuple[str, bytes]:
    form = await request.form(max_files=1, max_fields=16)
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise BadParameter("send the file's content as the multipart field 'file'", "file")
        return clean_filename(upload.filename, "file"), await upload.read()
    finally:
        await form.close()


async def _file_id(request: Request) -> str:
    try:
        body = json.loads(await request.body() or b"null")
    except ValueError:
        raise BadParameter("the body is neither multipart nor JSON", None) from None
    file_id = body.get("file_id") if isinstance(body, dict) else None
    if not isinstance(file_id, str) or not file_id:
        raise BadParameter("give a multipart 'file' or a JSON 'file_id'", "file_id")
    return file_id
