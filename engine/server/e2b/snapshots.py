"""E2B's fork and snapshots over lci's (how lci keeps them: docs/snapshots.md).

    POST   /sandboxes/{id}/fork        `count` new sandboxes from the sandbox's live state
    POST   /sandboxes/{id}/snapshots   a snapshot of the sandbox: {snapshotID, names}
    GET    /snapshots                  the caller's snapshots (sandboxID, name, limit, nextToken)
    DELETE /templates/{snapshotID}     delete a snapshot (E2B's snapshots are templates)
    POST   /sandboxes {templateID: a snapshotID}   a new sandbox from the snapshot (see lifecycle)

A sandbox's default context is what is forked and snapshotted (its interpreter and files); the
other code contexts are not carried. Unlike E2B's, an lci snapshot lives inside its sandbox's
session, so it lasts as long as the sandbox: killed or expired, its snapshots are gone (their ids
then answer 404, never a fresh sandbox in their place).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict

from engine.errors import BadParameter, LCIError, NotImplementedHere, SandboxNotFound
from engine.server.e2b import listing
from engine.server.e2b.registry import MAX_TIMEOUT_S, E2BSandbox, E2BSandboxes
from engine.server.e2b.tokens import created
from engine.server.http.errors import error_body, status_for
from engine.server.runtime.state import Owner, ServerState, State

router = APIRouter(tags=["E2B sandboxes"], include_in_schema=False)

MAX_FORKS = 16  # per request, as the session API's fork; E2B's SDK allows up to 20
FORK_TIMEOUT_S = 15  # E2B's default lifetime of a fork
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$")
_TAG = ":default"  # E2B's snapshot ids name a template and its tag
_RETIRED_KEPT = 10_000  # ids of deleted snapshots remembered, so they answer 404


class ForkBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    timeout: int | None = None
    count: int | None = None


class SnapshotBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str | None = None
    memory: bool | None = None


@dataclass
class E2BSnapshot:
    id: str  # E2B's snapshotID (`<name or hex>:default`)
    owner: str
    sandbox_id: str
    session_id: str
    snapshot_id: str  # the lci snapshot in that session
    created_at: float
    visible_cells: int  # the client's cells in the sandbox when it was taken
    name: str | None = None  # the name it was given, if any


class E2BSnapshots:
    """The snapshots the E2B surface handed out, by E2B id; attached beside the sandboxes."""

    def __init__(self, registry: E2BSandboxes) -> None:
        self.registry = registry
        self._snapshots: dict[str, E2BSnapshot] = {}
        self._retired: OrderedDict[str, None] = OrderedDict()

    def find(self, snapshot_id: str, owner: str) -> E2BSnapshot | None:
        """The owner's live snapshot of that id; None for an id that is no snapshot's; raises
        NotFound for a snapshot deleted or gone with its sandbox (or another owner's)."""
        snap = self._snapshots.get(snapshot_id)
        if snap is not None and snap.owner == owner and self._alive(snap):
            return snap
        if snap is not None or snapshot_id in self._retired:
            raise SandboxNotFound(f"snapshot {snapshot_id!r} was not found", "templateID")
        return None

    def list(self, owner: str, sandbox_id: str | None, name: str | None) -> list[E2BSnapshot]:
        self._prune()
        return [
            s
            for s in self._snapshots.values()
            if s.owner == owner
            and sandbox_id in (None, s.sandbox_id)
            and name in (None, s.id, s.id.removesuffix(_TAG), s.name, f"{s.name}{_TAG}")
        ]

    async def take(self, sandbox: E2BSandbox, name: str | None) -> E2BSnapshot:
        session = self.registry.session(sandbox)
        visible = session.executions - sandbox.default.hidden_cells
        info = await session.snapshot()
        # A name is the owner's own: another owner's snapshot of the same name is not replaced.
        snap_id = (f"{_owner_tag(sandbox.owner)}{name}" if name else uuid.uuid4().hex[:20]) + _TAG
        replaced = self._snapshots.get(snap_id)
        if replaced is not None:
            await self.delete(replaced)  # E2B: the name now points at the new snapshot
        snap = E2BSnapshot(
            snap_id, sandbox.owner, sandbox.id, session.id, info.id, info.created_at, visible, name
        )
        self._snapshots[snap_id] = snap
        self._retired.pop(snap_id, None)
        return snap

    async def delete(self, snap: E2BSnapshot) -> None:
        self._snapshots.pop(snap.id, None)
        self._retire(snap.id)
        await _quietly_delete(self.registry, snap)

    def _alive(self, snap: E2BSnapshot) -> bool:
        try:
            sandbox = self.registry.get(snap.sandbox_id)
        except SandboxNotFound:
            return False
        return sandbox.default.session_id == snap.session_id

    def _prune(self) -> None:
        for snap in [s for s in self._snapshots.values() if not self._alive(s)]:
            del self._snapshots[snap.id]
            self._retire(snap.id)

    def _retire(self, snapshot_id: str) -> None:
        self._retired[snapshot_id] = None
        while len(self._retired) > _RETIRED_KEPT:
            self._retired.popitem(last=False)


async def _quietly_delete(registry: E2BSandboxes, snap: E2BSnapshot) -> None:
    try:
        session = registry.runner.manager.get(snap.session_id)
        await session.delete_snapshot(snap.snapshot_id)
    except LCIError:
        pass  # gone with its session, or already deleted


def snapshots(shared: ServerState) -> E2BSnapshots:
    return shared.part(E2BSnapshots)


@router.post("/sandboxes/{sandbox_id}/fork", status_code=201)
async def fork_sandbox(
    sandbox_id: str, state: State, owner: Owner, body: ForkBody | None = None
) -> JSONResponse:
    """`count` new sandboxes with the sandbox's state (its default context) and files, each
    reported on its own: `{"sandbox": ...}`, or `{"error": ...}` for one that did not start."""
    body = body or ForkBody()
    count = 1 if body.count is None else body.count
    if not 1 <= count <= MAX_FORKS:
        raise BadParameter(f"count must be between 1 and {MAX_FORKS} on lci", "count")
    timeout_s = FORK_TIMEOUT_S if body.timeout is None else body.timeout
    if not 0 < timeout_s <= MAX_TIMEOUT_S:
        raise BadParameter(f"timeout must be between 1 and {MAX_TIMEOUT_S} seconds", "timeout")
    registry = state.part(E2BSandboxes)
    sandbox = registry.get(sandbox_id, owner)
    session = registry.session(sandbox)
    visible = session.executions - sandbox.default.hidden_cells
    forks = await state.runner.fork(session.id, owner, n=count)
    results: list[dict[str, Any]] = []
    for fork in forks:
        try:
            child = await registry.adopt(
                state.manager.get(fork.session.id),
                sandbox.spec,
                template=sandbox.template,
                metadata=dict(sandbox.metadata),
                timeout_s=timeout_s,
                owner=owner,
                visible_cells=visible,
            )
        except LCIError as exc:
            with contextlib.suppress(LCIError):
                await state.manager.close(fork.session.id)
            status = status_for(exc.code)
            results.append({"error": error_body("e2b", exc.code, exc.message, status)})
            continue
        results.append({"sandbox": created(child)})
    return JSONResponse(results, status_code=201)


@router.post("/sandboxes/{sandbox_id}/snapshots", status_code=201)
async def create_snapshot(
    sandbox_id: str, state: State, owner: Owner, body: SnapshotBody | None = None
) -> dict[str, Any]:
    body = body or SnapshotBody()
    if body.memory is False:
        raise NotImplementedHere("lci snapshots always keep memory: mode 'filesystem' is not kept")
    if body.name is not None and not _NAME.match(body.name):
        raise BadParameter("name must be letters, digits and . _ / - (at most 128)", "name")
    sandbox = state.part(E2BSandboxes).get(sandbox_id, owner)
    return _described(await snapshots(state).take(sandbox, body.name))


@router.get("/snapshots")
async def list_snapshots(request: Request, state: State, owner: Owner) -> JSONResponse:
    """The caller's snapshots, oldest first, in pages of `limit` (`X-Next-Token` for the next)."""
    query = request.query_params
    found = snapshots(state).list(owner, query.get("sandboxID"), query.get("name"))
    start = _start(query.get("nextToken"))
    limit = _limit(query.get("limit"))
    page = found[start : start + limit]
    headers = {}
    if start + limit < len(found):
        headers[listing.NEXT_TOKEN_HEADER] = str(start + limit)
    return JSONResponse([_described(s) for s in page], headers=headers)


@router.delete("/templates/{template_id:path}", status_code=204)
async def delete_snapshot(template_id: str, state: State, owner: Owner) -> Response:
    """Delete a snapshot; lci has no other templates, so any other id is a 404."""
    store = snapshots(state)
    snap = store.find(template_id, owner)
    if snap is None:
        raise SandboxNotFound(f"template {template_id!r} was not found", "templateID")
    await store.delete(snap)
    return Response(status_code=204)


async def from_snapshot(state: ServerState, snap: E2BSnapshot, new: NewFromSnapshot) -> E2BSandbox:
    """A new sandbox from a snapshot (`POST /sandboxes` naming it as its template): a fork of
    the snapshot's session, with its state, files, limits and environment. What the request
    asks that differs from the snapshot's sandbox is refused, not ignored."""
    registry = state.part(E2BSandboxes)
    source = registry.get(snap.sandbox_id)
    if new.envs and new.envs != source.spec.env:
        raise NotImplementedHere("a sandbox from a snapshot keeps the snapshot's envVars")
    if new.internet not in (None, source.spec.limits.network):
        raise NotImplementedHere("a sandbox from a snapshot keeps the snapshot's internet access")
    (fork,) = await state.runner.fork(snap.session_id, new.owner, n=1, snapshot_id=snap.snapshot_id)
    try:
        return await registry.adopt(
            state.manager.get(fork.session.id),
            source.spec,
            template=snap.id,
            metadata=new.metadata,
            timeout_s=new.timeout_s,
            owner=new.owner,
            visible_cells=snap.visible_cells,
        )
    except BaseException:
        with contextlib.suppress(LCIError):
            await state.manager.close(fork.session.id)
        raise


@dataclass(frozen=True)
class NewFromSnapshot:
    """What `POST /sandboxes` asked of a sandbox whose template is a snapshot."""

    owner: str
    metadata: dict[str, str]
    timeout_s: int | None
    envs: dict[str, str]
    internet: bool | None


def _owner_tag(owner: str) -> str:
    """Keeps one owner's names apart from another's (E2B's team namespace, in effect)."""
    return "" if not owner else hashlib.sha256(owner.encode()).hexdigest()[:8] + "/"


def _described(snap: E2BSnapshot) -> dict[str, Any]:
    return {"snapshotID": snap.id, "names": [snap.id], "createdAt": _iso(snap.created_at)}


def _iso(moment: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment))


def _start(token: str | None) -> int:
    if not token:
        return 0
    if not token.isdigit():
        raise BadParameter("nextToken is not a token lci gave (X-Next-Token)", "nextToken")
    return int(token)


def _limit(value: str | None) -> int:
    if not value:
        return listing.MAX_LIMIT
    if not value.isdigit() or not 1 <= int(value) <= listing.MAX_LIMIT:
        raise BadParameter(f"limit must be between 1 and {listing.MAX_LIMIT}", "limit")
    return int(value)
