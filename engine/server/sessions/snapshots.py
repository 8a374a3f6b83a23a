"""Snapshots and forks of a live session over HTTP (how they are kept: docs/snapshots.md).

POST   /v1/sessions/{id}/snapshots                 keep the interpreter's state and the files
GET    /v1/sessions/{id}/snapshots                 the session's snapshots, oldest first
DELETE /v1/sessions/{id}/snapshots/{sid}           free one
POST   /v1/sessions/{id}/snapshots/{sid}/restore   make the session that state again
POST   /v1/sessions/{id}/fork                      `n` new sessions with its state (or a snapshot's)

Owner checks are those of every session route: another key's session answers 404 as if it did not
exist, and forks belong to the caller's key, counted against its quota (429 past it).
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from engine.models import ForkResult, SnapshotInfo
from engine.server.http.errors import PlainError
from engine.server.http.openapi import errors
from engine.server.runtime.state import Owner, State

router = APIRouter(prefix="/v1/sessions/{session_id}", tags=["Snapshots"])
_COMMON = (401, 404, 413, 500)
MAX_FORKS = 16  # per request; the owner's quota and the server's caps still apply to each


class SnapshotList(BaseModel):
    snapshots: list[SnapshotInfo]


class ForkBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    n: int = Field(1, ge=1, le=MAX_FORKS, description="How many new sessions.")
    snapshot_id: str | None = Field(
        None, description="Fork from this snapshot of the session instead of its live state."
    )


class ForkList(BaseModel):
    forks: list[ForkResult]


@router.post(
    "/snapshots",
    status_code=201,
    response_model=SnapshotInfo,
    operation_id="create_snapshot",
    responses=errors(PlainError, 409, 429, *_COMMON),
)
async def create_snapshot(session_id: str, state: State, owner: Owner) -> SnapshotInfo:
    """Keep the session's whole interpreter state (every object) and its working directory.
    409 while a cell runs or when this sandbox cannot keep snapshots; 429 past the session's
    snapshot cap (delete one first)."""
    return await state.runner.owned(session_id, owner).snapshot()


@router.get(
    "/snapshots",
    response_model=SnapshotList,
    operation_id="list_snapshots",
    responses=errors(PlainError, *_COMMON),
)
async def list_snapshots(session_id: str, state: State, owner: Owner) -> SnapshotList:
    """The session's snapshots, oldest first, with the memory and disk each holds now."""
    return SnapshotList(snapshots=await state.runner.owned(session_id, owner).list_snapshots())


@router.delete(
    "/snapshots/{snapshot_id}",
    status_code=204,
    operation_id="delete_snapshot",
    responses=errors(PlainError, 409, *_COMMON),
)
async def delete_snapshot(
    session_id: str, snapshot_id: str, state: State, owner: Owner
) -> Response:
    """Free the snapshot's memory and disk."""
    await state.runner.owned(session_id, owner).delete_snapshot(snapshot_id)
    return Response(status_code=204)


@router.post(
    "/snapshots/{snapshot_id}/restore",
    response_model=SnapshotInfo,
    operation_id="restore_snapshot",
    responses=errors(PlainError, 409, *_COMMON),
)
async def restore_snapshot(
    session_id: str, snapshot_id: str, state: State, owner: Owner
) -> SnapshotInfo:
    """Make the session the snapshot's state again, interpreter and files; the snapshot is
    kept, so it can be restored again."""
    return await state.runner.owned(session_id, owner).restore(snapshot_id)


@router.post(
    "/fork",
    status_code=201,
    response_model=ForkList,
    operation_id="fork_session",
    responses=errors(PlainError, 400, 409, 429, 503, *_COMMON),
)
async def fork_session(
    session_id: str, state: State, owner: Owner, body: ForkBody | None = None
) -> ForkList:
    """New sessions with the session's state and files (or a snapshot's), each in its own
    sandbox, belonging to the caller's key. What of the namespace could not cross into a new
    sandbox is listed per name in `not_kept`."""
    body = body or ForkBody()
    forks = await state.runner.fork(session_id, owner, n=body.n, snapshot_id=body.snapshot_id)
    return ForkList(forks=forks)
