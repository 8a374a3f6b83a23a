"""envd's directory watchers, over `DirWatcher` (polling snapshots of the workdir):

    POST /filesystem.Filesystem/CreateWatcher     -> {"watcherId"}; the first snapshot is taken
    POST /filesystem.Filesystem/GetWatcherEvents  what changed since the last call (polled then)
    POST /filesystem.Filesystem/RemoveWatcher
    POST /filesystem.Filesystem/WatchDir          server-streaming: start, then events as polled
                                                  every 0.2 s, a keepalive every 30 s

A sandbox holds at most `MAX_WATCHERS` watchers; they go with its session (they are kept by the
session object, weakly) and hold no task: polling happens in the request that asks for events.
A new file is reported as envd reports an upload: create, write, chmod.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import weakref
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict

from engine.core.session import Session
from engine.core.watch import DirWatcher
from engine.errors import FileNotFound, LCIError
from engine.models import FileEvent
from engine.server.e2b.connect import END_STREAM, STREAM_MEDIA, envelope, error_reply, message
from engine.server.e2b.entries import relative, wire_entry
from engine.server.e2b.routing import PREFIX, Sandbox, sandbox_of
from engine.server.e2b.state import sandboxes
from engine.server.runtime.state import State

router = APIRouter(
    prefix=PREFIX + "/filesystem.Filesystem",
    dependencies=[Depends(sandbox_of)],
    include_in_schema=False,
)
MAX_WATCHERS = 64
KEEPALIVE_S = 30.0
_EVENT_TYPES = {
    "create": "EVENT_TYPE_CREATE",
    "write": "EVENT_TYPE_WRITE",
    "remove": "EVENT_TYPE_REMOVE",
    "rename": "EVENT_TYPE_RENAME",
    "chmod": "EVENT_TYPE_CHMOD",
}
_watchers: weakref.WeakKeyDictionary[Session, dict[str, tuple[DirWatcher, bool]]] = (
    weakref.WeakKeyDictionary()
)


class WatchRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    path: str = ""
    recursive: bool = False
    includeEntry: bool = False


class WatcherId(BaseModel):
    model_config = ConfigDict(extra="allow")

    watcherId: str = ""


async def _started(session: Session, body: WatchRequest) -> DirWatcher:
    watcher = session.tree.watch(str(relative(session, body.path, allow_root=True)), body.recursive)
    await watcher.start()
    return watcher


def _wire_events(session: Session, events: list[FileEvent], entries: bool) -> list[dict[str, Any]]:
    new_files = {
        e.path for e in events if e.type == "create" and e.entry and e.entry.type == "file"
    }
    last = {event.path: index for index, event in enumerate(events)}
    wired: list[dict[str, Any]] = []
    for index, event in enumerate(events):
        wire: dict[str, Any] = {"name": event.path, "type": _EVENT_TYPES[event.type]}
        if entries and event.entry is not None:
            wire["entry"] = wire_entry(session, event.entry)
        wired.append(wire)
        if event.path in new_files and last[event.path] == index:
            wired.append({**wire, "type": _EVENT_TYPES["chmod"]})  # envd sets the mode last
    return wired


@router.post("/CreateWatcher", response_model=None)
async def create_watcher(
    body: WatchRequest, sandbox: Sandbox, state: State
) -> dict[str, Any] | JSONResponse:
    session = sandboxes(state).session(sandbox)
    held = _watchers.setdefault(session, {})
    if len(held) >= MAX_WATCHERS:
        too_many = f"a sandbox may have at most {MAX_WATCHERS} watchers"
        return error_reply(429, "resource_exhausted", too_many)
    watcher_id = secrets.token_hex(8)
    held[watcher_id] = (await _started(session, body), body.includeEntry)
    return {"watcherId": watcher_id}


@router.post("/GetWatcherEvents", response_model=None)
async def get_events(
    body: WatcherId, sandbox: Sandbox, state: State
) -> dict[str, Any] | JSONResponse:
    session = sandboxes(state).session(sandbox)
    found = _watchers.get(session, {}).get(body.watcherId)
    if found is None:
        return error_reply(404, "not_found", f"no watcher {body.watcherId!r}")
    watcher, entries = found
    return {"events": _wire_events(session, await watcher.poll(), entries)}


@router.post("/RemoveWatcher", response_model=None)
async def remove_watcher(
    body: WatcherId, sandbox: Sandbox, state: State
) -> dict[str, Any] | JSONResponse:
    session = sandboxes(state).session(sandbox)
    if _watchers.get(session, {}).pop(body.watcherId, None) is None:
        return error_reply(404, "not_found", f"no watcher {body.watcherId!r}")
    return {}


_CODES = {FileNotFound: "not_found"}


@router.post("/WatchDir")
async def watch_dir(request: Request, sandbox: Sandbox, state: State) -> StreamingResponse:
    session = sandboxes(state).session(sandbox)
    body = WatchRequest.model_validate(await message(request))
    media = STREAM_MEDIA
    try:
        watcher = await _started(session, body)
    except LCIError as exc:
        code = "not_found" if isinstance(exc, FileNotFound) else "invalid_argument"
        error = {"error": {"code": code, "message": str(exc)}}
        return StreamingResponse(iter([envelope(error, END_STREAM)]), media_type=media)
    return StreamingResponse(_stream(session, watcher, body.includeEntry), media_type=media)


async def _stream(session: Session, watcher: DirWatcher, entries: bool) -> AsyncIterator[bytes]:
    yield envelope({"start": {}})
    quiet_since = time.monotonic()
    end: dict[str, Any] = {}
    try:
        while True:
            for event in _wire_events(session, await watcher.poll(), entries):
                yield envelope({"filesystem": event})
                quiet_since = time.monotonic()
            if time.monotonic() - quiet_since > KEEPALIVE_S:
                yield envelope({"keepalive": {}})
                quiet_since = time.monotonic()
            await asyncio.sleep(0.2)
    except LCIError as exc:  # the session ended, or the directory went
        end = {"error": {"code": "unavailable", "message": str(exc)}}
    yield envelope(end, END_STREAM)
