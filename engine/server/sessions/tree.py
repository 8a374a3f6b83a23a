"""The session API's view of a workdir as a tree (`Session.tree`): entries, directories, moves and
a watch. Every path is taken as the file routes take it (relative to the working directory, or
absolute under it or one of its aliases) and checked there: one that leaves the workdir is a 400,
a symlink is described and never followed.

    GET    /v1/sessions/{id}/tree?path=&depth=1        entries under a directory, `depth` levels
    GET    /v1/sessions/{id}/tree/stat?path=           one entry (a symlink as itself)
    POST   /v1/sessions/{id}/tree/dirs                 {path, mode}: make it with its parents;
                                                       201 made, 200 it was there already
    DELETE /v1/sessions/{id}/tree?path=&recursive=     remove a file, link or (empty, unless
                                                       `recursive`) directory
    POST   /v1/sessions/{id}/tree/move                 {source, destination}: rename
    GET    /v1/sessions/{id}/tree/watch?path=&recursive=
                                                       SSE: `ready`, then one event per change
                                                       (create, write, remove, rename, chmod);
                                                       `error` and the end when the session goes
"""

from __future__ import annotations

import json
import weakref
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from engine.core.session import Session
from engine.core.watch import RECURSIVE_DEPTH, DirWatcher
from engine.errors import CapacityExceeded, FileAccessError, LCIError
from engine.models import FileEntry
from engine.server.http.errors import PlainError, error_body, status_for
from engine.server.http.openapi import SSE_EVENT, errors
from engine.server.http.sse import Piece, Rejection, named_event, respond
from engine.server.runtime.state import Owner, State

router = APIRouter(prefix="/v1/sessions/{session_id}/tree", tags=["Sessions"])

_COMMON = (401, 404, 409, 500)
# Each watch polls its directory every 0.2 s: a session's watches are bounded so that one client
# cannot keep the sandbox busy listing.
MAX_WATCHES = 16
_watches: weakref.WeakKeyDictionary[Session, int] = weakref.WeakKeyDictionary()

TreePath = Annotated[
    str, Query(description="Relative to the working directory ('' for it), or absolute in it.")
]


class TreeEntries(BaseModel):
    entries: list[FileEntry]


class MakeDirRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    path: str = Field(description="The directory to make, with any missing parents.")
    mode: int = Field(0o755, ge=0, le=0o777, description="Permission bits (default 0o755).")


class MoveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    source: str
    destination: str = Field(
        description="The new path; missing parents are made, a file there is replaced."
    )


class RemovedEntry(BaseModel):
    path: str
    removed: bool = True


_WATCH_200: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "`ready`, then `create`/`write`/`remove`/`rename`/`chmod` events, each a "
        "FileEvent",
        "content": {"text/event-stream": {"schema": SSE_EVENT}},
    }
}


@router.get(
    "",
    response_model=TreeEntries,
    operation_id="list_tree",
    responses=errors(PlainError, 400, *_COMMON),
)
async def list_tree(
    session_id: str,
    state: State,
    owner: Owner,
    path: TreePath = "",
    depth: Annotated[int, Query(ge=1, le=RECURSIVE_DEPTH)] = 1,
) -> TreeEntries:
    """Entries under the directory `path`, `depth` levels down (1: its children), directories
    and symlinks included, sorted by path, at most 10,000."""
    tree = state.runner.owned(session_id, owner).tree
    return TreeEntries(entries=await tree.list(path, depth))


@router.get(
    "/stat",
    response_model=FileEntry,
    operation_id="stat_entry",
    responses=errors(PlainError, 400, *_COMMON),
)
async def stat_entry(session_id: str, state: State, owner: Owner, path: TreePath = "") -> FileEntry:
    """One entry: a file, directory, symlink (described, not followed) or other."""
    return await state.runner.owned(session_id, owner).tree.stat(path)


@router.post(
    "/dirs",
    status_code=201,
    response_model=FileEntry,
    operation_id="make_dir",
    responses={
        200: {"description": "It was already there", "model": FileEntry},
        **errors(PlainError, 400, *_COMMON),
    },
)
async def make_dir(
    session_id: str, body: MakeDirRequest, state: State, owner: Owner, response: Response
) -> FileEntry:
    """Make a directory with its parents: 201 when made, 200 when it already was a directory,
    400 (file_access) when something that is not a directory has the name."""
    tree = state.runner.owned(session_id, owner).tree
    if not await tree.make_dir(body.path, body.mode):
        response.status_code = 200
    return await tree.stat(body.path)


@router.delete(
    "",
    response_model=RemovedEntry,
    operation_id="remove_entry",
    responses=errors(PlainError, 400, *_COMMON),
)
async def remove_entry(
    session_id: str,
    state: State,
    owner: Owner,
    path: TreePath,
    recursive: Annotated[bool, Query(description="Remove a directory with its contents.")] = False,
) -> RemovedEntry:
    """Remove a file, a symlink (itself, never its target) or a directory: an empty one, or with
    everything in it when `recursive`. The workdir itself cannot be removed."""
    tree = state.runner.owned(session_id, owner).tree
    checked = tree.relative(path)  # refuses the workdir itself before anything is looked at
    entry = await tree.stat(checked)
    if entry.type == "dir" and not recursive and await tree.list(checked, 1):
        raise FileAccessError(f"directory {checked!r} is not empty: pass recursive=true")
    await tree.remove(checked)
    return RemovedEntry(path=checked)


@router.post(
    "/move",
    response_model=FileEntry,
    operation_id="move_entry",
    responses=errors(PlainError, 400, *_COMMON),
)
async def move_entry(session_id: str, body: MoveRequest, state: State, owner: Owner) -> FileEntry:
    """Rename `source` to `destination`, both in the workdir; a symlink moves as itself. Returns
    the entry at its new path."""
    tree = state.runner.owned(session_id, owner).tree
    return await tree.move(body.source, body.destination)


@router.get(
    "/watch",
    response_model=None,
    operation_id="watch_tree",
    responses={**_WATCH_200, **errors(PlainError, 400, 429, *_COMMON)},
)
async def watch_tree(
    session_id: str,
    request: Request,
    state: State,
    owner: Owner,
    path: TreePath = "",
    recursive: bool = False,
) -> Response:
    """Changes under the directory `path` as server-sent events, found by polling (every
    0.2 s): `ready` once the first snapshot is taken, then one event per change, named by its
    type, carrying a FileEvent (paths relative to the watched directory). Ends when the client
    goes, or with an `error` event when the session closes or the directory goes. At most 16
    watches per session (429)."""
    session = state.runner.owned(session_id, owner)
    watcher = session.tree.watch(path, recursive)
    return await respond(request, _watching(session, watcher), state.options.heartbeat_s)


async def _watching(session: Session, watcher: DirWatcher) -> AsyncIterator[Piece]:
    if _watches.get(session, 0) >= MAX_WATCHES:
        exc: LCIError = CapacityExceeded(f"a session may have at most {MAX_WATCHES} watches")
        yield _rejection(exc)
        return
    _watches[session] = _watches.get(session, 0) + 1
    try:
        try:
            await watcher.start()
        except LCIError as exc:
            yield _rejection(exc)
            return
        yield named_event("ready", json.dumps({"path": watcher.path}))
        try:
            async for event in watcher.stream():
                yield named_event(event.type, event.model_dump_json())
        except LCIError as exc:  # the session closed, or the directory went
            yield named_event("error", json.dumps(_body(exc)))
    finally:
        _watches[session] = _watches.get(session, 1) - 1


def _body(exc: LCIError) -> dict[str, Any]:
    return error_body(
        "plain", exc.code, exc.message, status_for(exc.code), param=getattr(exc, "param", None)
    )


def _rejection(exc: LCIError) -> Rejection:
    return Rejection(status_for(exc.code), _body(exc))
