"""The plain API for embedding lci: sessions, executions and files over HTTP.

    POST   /v1/sessions                        start a session (backend, limits, env)
    GET    /v1/sessions                        list live sessions
    GET    /v1/sessions/{id}                   one session
    DELETE /v1/sessions/{id}                   close it
    POST   /v1/sessions/{id}/execute           run code; the Execution, or with `stream: true`
                                               SSE events stdout/stderr/display/result/truncated
                                               as they happen, then `execution` (or `error`)
    POST   /v1/sessions/{id}/files             upload (multipart: `file`, optional `path`)
    GET    /v1/sessions/{id}/files             list the working directory's files
    GET    /v1/sessions/{id}/files/{path}      download one

Responses `container_id`s are session ids of this API.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from engine.core.session import Session
from engine.core.workdir import split_path
from engine.errors import BadParameter, LCIError, SessionBusy
from engine.models import (
    BackendName,
    ExecuteRequest,
    Execution,
    FileInfo,
    Limits,
    OutputItem,
    SessionInfo,
    SessionSpec,
    StreamOutput,
)
from engine.server.http.errors import PlainError, error_body, status_for
from engine.server.http.openapi import SSE_EVENT, errors
from engine.server.http.sse import Piece, named_event, respond, until_disconnected
from engine.server.http.transfer import streamed_download
from engine.server.runtime.state import Owner, ServerState, State

router = APIRouter(prefix="/v1/sessions", tags=["Sessions"])

EnvName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
EnvValue = Annotated[str, StringConstraints(pattern=r"^[^\x00]*$")]
_COMMON = (401, 413, 500)
_CHUNK_BYTES = 1 << 20  # uploads are passed on in pieces (a cluster session's node gets them)


class LimitsChange(Limits):
    """Limits to change; fields left out keep the server's defaults."""

    model_config = ConfigDict(extra="forbid", strict=True)


class CreateSession(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    backend: BackendName | None = Field(
        None, strict=False, description="Default: the server's --backend."
    )
    limits: LimitsChange | None = Field(
        None, description="Limits to change; fields left out keep the server's defaults."
    )
    env: dict[EnvName, EnvValue] = Field(
        default_factory=dict,
        description="Extra environment variables.",
        json_schema_extra={"additionalProperties": False},
    )
    image: str | None = Field(None, description="Container image (docker backend).")


class SessionList(BaseModel):
    sessions: list[SessionInfo]


class Deleted(BaseModel):
    id: str
    deleted: bool = True


class ExecuteBody(ExecuteRequest):
    model_config = ConfigDict(extra="forbid", strict=True)

    stream: bool = Field(False, description="Stream the output as server-sent events.")


class FileList(BaseModel):
    files: list[FileInfo]


_EXECUTE_200: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The Execution, or SSE events ending with `execution` when streaming",
        "content": {"text/event-stream": {"schema": SSE_EVENT}},
    }
}
# OpenAPI links: a created session's id is what the other operations take (for stateful tools).
_SESSION_ID = {"session_id": "$response.body#/id"}
_CREATED: dict[int | str, dict[str, Any]] = {
    201: {
        "description": "The session, ready",
        "links": {
            name: {"operationId": name, "parameters": _SESSION_ID}
            for name in ("get_session", "execute", "upload_file", "list_files", "delete_session")
        },
    }
}
_DOWNLOAD_200: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The file's bytes",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


@router.post(
    "",
    status_code=201,
    response_model=SessionInfo,
    operation_id="create_session",
    responses={**_CREATED, **errors(PlainError, 400, 429, 503, *_COMMON)},
)
async def create_session(
    state: State, owner: Owner, body: CreateSession | None = None
) -> SessionInfo:
    """Start a session and return it once its interpreter is ready. It belongs to the API key
    that made it: to other keys it does not exist."""
    return (await state.runner.create(_spec(state, body or CreateSession()), owner)).info()


@router.get(
    "",
    response_model=SessionList,
    operation_id="list_sessions",
    responses=errors(PlainError, *_COMMON),
)
async def list_sessions(state: State, owner: Owner) -> SessionList:
    """The sessions of this API key."""
    return SessionList(sessions=[s.info() for s in state.runner.owned_sessions(owner)])


@router.get(
    "/{session_id}",
    response_model=SessionInfo,
    operation_id="get_session",
    responses=errors(PlainError, 404, *_COMMON),
)
async def get_session(session_id: str, state: State, owner: Owner) -> SessionInfo:
    """The session, with what its sandbox uses now (`usage`: CPU, memory, disk, network)."""
    session = state.runner.owned(session_id, owner)
    await session.measure()
    return session.info()


@router.delete(
    "/{session_id}",
    response_model=Deleted,
    operation_id="delete_session",
    responses=errors(PlainError, 404, *_COMMON),
)
async def delete_session(session_id: str, state: State, owner: Owner) -> Deleted:
    """Close the session (a running execution is stopped) and free everything it held."""
    state.runner.owned(session_id, owner)
    await state.manager.close(session_id)
    return Deleted(id=session_id)


@router.post(
    "/{session_id}/execute",
    response_model=Execution,
    operation_id="execute",
    responses={**_EXECUTE_200, **errors(PlainError, 400, 404, 409, 503, *_COMMON)},
)
async def execute(
    session_id: str, body: ExecuteBody, request: Request, state: State, owner: Owner
) -> Response:
    """Run code in the session. Errors in the code are part of the Execution, not HTTP errors;
    a second execution while one runs is refused (409) unless `wait` queues it."""
    session = state.runner.owned(session_id, owner)
    maximum = state.settings.max_limits.timeout_s
    if body.timeout_s is not None and body.timeout_s > maximum:
        raise BadParameter(
            f"timeout_s {body.timeout_s:g} exceeds the server's maximum {maximum:g}", "timeout_s"
        )
    if body.stream:
        if session.busy and not body.wait:
            raise SessionBusy(f"session {session.id} is already running an execution")
        return await respond(request, _stream(session, body), state.options.heartbeat_s)
    run = session.execute(body.code, timeout_s=body.timeout_s, wait=body.wait)
    execution = await until_disconnected(request, run)
    return Response(execution.model_dump_json(), media_type="application/json")


@router.post(
    "/{session_id}/files",
    status_code=201,
    response_model=FileInfo,
    operation_id="upload_file",
    responses=errors(PlainError, 400, 404, 409, *_COMMON),
)
async def upload_file(
    session_id: str,
    state: State,
    owner: Owner,
    file: Annotated[UploadFile, File(description="The file's content.")],
    path: Annotated[str | None, Form(description="Where to put it (default: its name).")] = None,
) -> FileInfo:
    """Put a file into the session's working directory."""
    session = state.runner.owned(session_id, owner)
    target = path or file.filename
    if not target:
        raise BadParameter("give the file a name or a path", "path")

    async def pieces() -> AsyncIterator[bytes]:
        while chunk := await file.read(_CHUNK_BYTES):
            yield chunk

    size = await session.write_file_chunks(target, pieces())
    # The path as the listing shows it: relative to the working directory, whatever was sent.
    stored = "/".join(split_path(target, session.info().workdir))
    return FileInfo(path=stored, size=size, modified_at=time.time())


@router.get(
    "/{session_id}/files",
    response_model=FileList,
    operation_id="list_files",
    responses=errors(PlainError, 404, 409, *_COMMON),
)
async def list_files(session_id: str, state: State, owner: Owner) -> FileList:
    return FileList(files=await state.runner.owned(session_id, owner).list_files())


@router.get(
    "/{session_id}/files/{path:path}",
    response_class=Response,
    operation_id="download_file",
    responses={**_DOWNLOAD_200, **errors(PlainError, 400, 404, 409, *_COMMON)},
)
async def download_file(session_id: str, path: str, state: State, owner: Owner) -> Response:
    chunks = state.runner.owned(session_id, owner).read_file_chunks(path)
    return await streamed_download(chunks, path)


def _spec(state: ServerState, body: CreateSession) -> SessionSpec:
    limits = state.settings.limits
    if body.limits is not None:
        changed = body.limits.model_dump(include=body.limits.model_fields_set)
        limits = Limits.model_validate({**limits.model_dump(), **changed})
    return SessionSpec(
        backend=body.backend or state.settings.backend,
        limits=limits,
        env=body.env,
        image=body.image,
    )


async def _stream(session: Session, body: ExecuteBody) -> AsyncIterator[Piece]:
    """An execution's output items as SSE events while it runs, then the Execution itself."""
    queue: asyncio.Queue[OutputItem] = asyncio.Queue()
    run = asyncio.ensure_future(
        session.execute(
            body.code, timeout_s=body.timeout_s, wait=body.wait, on_output=queue.put_nowait
        )
    )
    yield ": started\n\n"  # the response starts at once, not at the first output
    try:
        while not run.done():
            getter = asyncio.ensure_future(queue.get())
            await asyncio.wait({getter, run}, return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                yield _item_event(getter.result())
            else:
                getter.cancel()
        while not queue.empty():
            yield _item_event(queue.get_nowait())
        try:
            execution = run.result()
        except LCIError as exc:
            status = status_for(exc.code)
            yield named_event(
                "error", json.dumps(error_body("plain", exc.code, exc.message, status))
            )
            return
        yield named_event("execution", execution.model_dump_json())
    finally:
        if not run.done():
            run.cancel()
            with anyio.CancelScope(shield=True):
                await asyncio.wait({run})


def _item_event(item: OutputItem) -> str:
    name = item.name if isinstance(item, StreamOutput) else item.type
    return named_event(name, item.model_dump_json())
