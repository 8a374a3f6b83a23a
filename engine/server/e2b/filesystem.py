"""envd's filesystem service (connect-rpc, JSON codec: what E2B's SDKs send), over the sandbox's
working directory (see `entries.py` for the paths):

    POST /filesystem.Filesystem/Stat        one entry, all fields (`files.exists`, `get_info`)
    POST /filesystem.Filesystem/ListDir     entries down to `depth` (0 or 1: the children)
    POST /filesystem.Filesystem/MakeDir     with parents; ALREADY_EXISTS when it exists
    POST /filesystem.Filesystem/Remove      a file, link or directory tree; a missing path is fine
    POST /filesystem.Filesystem/Move        rename within the workdir
    (watchers: `watchers.py`)

Errors are connect errors: NOT_FOUND (404), INVALID_ARGUMENT (400, a path outside the workdir),
ALREADY_EXISTS (409).
"""

from __future__ import annotations

import contextlib
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from engine.errors import FileNotFound
from engine.server.e2b.connect import error_reply
from engine.server.e2b.entries import followed, relative, wire_entry
from engine.server.e2b.routing import PREFIX, Sandbox, sandbox_of
from engine.server.e2b.state import sandboxes
from engine.server.runtime.state import State

router = APIRouter(
    prefix=PREFIX + "/filesystem.Filesystem",
    dependencies=[Depends(sandbox_of)],
    include_in_schema=False,
)
DIR_MODE = 0o755  # what envd makes directories with


class RpcPath(BaseModel):
    model_config = ConfigDict(extra="allow")

    path: str = ""
    depth: int | None = None


class RpcMove(BaseModel):
    model_config = ConfigDict(extra="allow")

    source: str = ""
    destination: str = ""


@router.post("/Stat")
async def stat(body: RpcPath, sandbox: Sandbox, state: State) -> dict[str, Any]:
    session = sandboxes(state).session(sandbox)
    entry = await session.tree.stat(str(relative(session, body.path, allow_root=True)))
    return {"entry": wire_entry(session, await followed(session, entry))}


@router.post("/ListDir")
async def list_dir(body: RpcPath, sandbox: Sandbox, state: State) -> dict[str, Any]:
    session = sandboxes(state).session(sandbox)
    base = str(relative(session, body.path, allow_root=True))
    entries = await session.tree.list(base, body.depth or 1)
    return {"entries": [wire_entry(session, entry) for entry in entries]}


@router.post("/MakeDir", response_model=None)
async def make_dir(body: RpcPath, sandbox: Sandbox, state: State) -> dict[str, Any] | JSONResponse:
    session = sandboxes(state).session(sandbox)
    rel = str(relative(session, body.path))
    if not await session.tree.make_dir(rel, DIR_MODE):
        return error_reply(409, "already_exists", f"directory {body.path!r} already exists")
    return {"entry": wire_entry(session, await session.tree.stat(rel))}


@router.post("/Remove")
async def remove(body: RpcPath, sandbox: Sandbox, state: State) -> dict[str, Any]:
    session = sandboxes(state).session(sandbox)
    with contextlib.suppress(FileNotFound):  # envd removes like `rm -rf`: nothing is fine
        await session.tree.remove(str(relative(session, body.path)))
    return {}


@router.post("/Move")
async def move(body: RpcMove, sandbox: Sandbox, state: State) -> dict[str, Any]:
    session = sandboxes(state).session(sandbox)
    source, destination = relative(session, body.source), relative(session, body.destination)
    entry = await session.tree.move(str(source), str(destination))
    return {"entry": wire_entry(session, entry)}
