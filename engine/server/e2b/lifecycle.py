"""E2B's control plane (what `E2B_API_URL` points at): create, get, list, kill, set timeout and
connect sandboxes. The gate checks the API key (E2B's SDKs send it as `X-API-Key`).

    POST   /v2/sandboxes  (and /sandboxes)      create: templateID, timeout, metadata, envVars,
                                               allow_internet_access, network (see `_internet`)
    GET    /v2/sandboxes  (and /sandboxes)      list: filtered, ordered, paged (see `listing`)
    GET    /sandboxes/{id}                      one sandbox's details
    DELETE /sandboxes/{id}                      kill
    POST   /sandboxes/{id}/timeout              set the timeout (seconds from now)
    POST   /v2/sandboxes/{id}/connect (and v1)  connect: the timeout only ever grows
    GET    /sandboxes/{id}/metrics              one sample of what it uses now
    POST   /sandboxes/{id}/pause, /resume; GET .../logs   501: not supported

Fork and snapshots are in `snapshots`.

Field names follow E2B's OpenAPI document (camelCase, `templateID`, `sandboxID`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from engine.errors import BadParameter, LCIError, NotImplementedHere
from engine.models import MIB, Limits, SessionSpec, SessionUsage
from engine.server.e2b import listing
from engine.server.e2b.registry import E2BSandbox
from engine.server.e2b.snapshots import NewFromSnapshot, from_snapshot, snapshots
from engine.server.e2b.state import sandboxes
from engine.server.e2b.tokens import CLIENT_ID, ENVD_VERSION, created
from engine.server.runtime.state import Owner, State

# Out of lci's OpenAPI document: the wire is E2B's, described by E2B's own document.
router = APIRouter(tags=["E2B sandboxes"], include_in_schema=False)

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ALL_TRAFFIC = "0.0.0.0/0"  # E2B's `denyOut` entry for every address


class NewSandbox(BaseModel):
    """E2B's `NewSandboxV2`. Fields lci cannot honour are refused when set, not ignored."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    template_id: str = Field("base", alias="templateID")
    timeout: int | None = None
    metadata: dict[str, str] | None = None
    env_vars: dict[str, str] | None = Field(None, alias="envVars")
    allow_internet_access: bool | None = None
    auto_pause: bool | None = Field(None, alias="autoPause")
    mcp: dict[str, Any] | None = None
    network: dict[str, Any] | None = None
    volume_mounts: list[Any] | None = Field(None, alias="volumeMounts")


class TimeoutBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    timeout: int | None = None


@router.post("/v2/sandboxes", status_code=201)
@router.post("/sandboxes", status_code=201)
async def create_sandbox(body: NewSandbox, state: State, owner: Owner) -> dict[str, Any]:
    """Start a sandbox (an lci session) and return the tokens that address it; a template that
    is a snapshot's id starts it from that snapshot (see `snapshots`)."""
    _refuse_unsupported(body)
    envs = body.env_vars or {}
    for name, value in envs.items():
        if not _ENV_NAME.match(name) or "\x00" in value:
            raise BadParameter(f"invalid environment variable {name!r}", "envVars")
    limits = state.settings.limits
    internet = _internet(body)
    if internet is not None:
        limits = Limits.model_validate({**limits.model_dump(), "network": internet})
    spec = SessionSpec(backend=state.settings.backend, limits=limits, env=envs)
    snap = snapshots(state).find(body.template_id, owner)
    if snap is not None:
        new = NewFromSnapshot(owner, body.metadata or {}, body.timeout, envs, internet)
        return created(await from_snapshot(state, snap, new))
    sandbox = await sandboxes(state).create(
        spec,
        template=body.template_id,
        metadata=body.metadata or {},
        timeout_s=body.timeout,
        owner=owner,
    )
    return created(sandbox)


@router.get("/v2/sandboxes")
async def list_sandboxes(request: Request, state: State, owner: Owner) -> JSONResponse:
    """The caller's sandboxes, filtered, newest first, in pages (see `listing`)."""
    return _listing(request, state, owner, default_limit=listing.MAX_LIMIT)


@router.get("/sandboxes")
async def list_sandboxes_v1(request: Request, state: State, owner: Owner) -> JSONResponse:
    """E2B's older list: every match on one page unless a `limit` is given."""
    return _listing(request, state, owner, default_limit=None)


def _listing(request: Request, state: State, owner: str, default_limit: int | None) -> JSONResponse:
    query = listing.parse(request.query_params.multi_items(), default_limit)
    found = listing.page(sandboxes(state).list(owner), query)
    headers = {}
    if found.next_token is not None:
        headers[listing.NEXT_TOKEN_HEADER] = found.next_token
    if found.total_running is not None:
        headers[listing.TOTAL_RUNNING_HEADER] = str(found.total_running)
    return JSONResponse([_listed(s) for s in found.sandboxes], headers=headers)


@router.get("/sandboxes/{sandbox_id}")
async def get_sandbox(sandbox_id: str, state: State, owner: Owner) -> dict[str, Any]:
    sandbox = sandboxes(state).get(sandbox_id, owner)
    return {
        **_listed(sandbox),
        "envdAccessToken": sandbox.token,
        "domain": None,
        "allowInternetAccess": sandbox.spec.limits.network,
    }


@router.delete("/sandboxes/{sandbox_id}", status_code=204)
async def kill_sandbox(sandbox_id: str, state: State, owner: Owner) -> Response:
    registry = sandboxes(state)
    registry.get(sandbox_id, owner)
    await registry.kill(sandbox_id)
    return Response(status_code=204)


@router.post("/sandboxes/{sandbox_id}/timeout", status_code=204)
async def set_timeout(sandbox_id: str, body: TimeoutBody, state: State, owner: Owner) -> Response:
    registry = sandboxes(state)
    if body.timeout is None:
        raise BadParameter("timeout is required", "timeout")
    registry.set_timeout(registry.get(sandbox_id, owner), body.timeout, only_extend=False)
    return Response(status_code=204)


@router.post("/v2/sandboxes/{sandbox_id}/connect")
@router.post("/sandboxes/{sandbox_id}/connect")
async def connect_sandbox(
    sandbox_id: str, state: State, owner: Owner, body: TimeoutBody | None = None
) -> JSONResponse:
    """A running sandbox's tokens again; a longer timeout extends it (a shorter one does not)."""
    registry = sandboxes(state)
    sandbox = registry.get(sandbox_id, owner)
    if body is not None and body.timeout is not None:
        registry.set_timeout(sandbox, body.timeout, only_extend=True)
    return JSONResponse(created(sandbox), status_code=200)


@router.get("/sandboxes/{sandbox_id}/metrics")
async def metrics(sandbox_id: str, state: State, owner: Owner) -> list[dict[str, Any]]:
    """One sample of what the sandbox uses now (lci keeps no history): its sessions measured,
    CPU use as a share of its CPUs since the previous measurement (or over a short interval)."""
    sandbox = sandboxes(state).get(sandbox_id, owner)
    sessions = []
    for context in list(sandbox.contexts.values()) or [sandbox.default]:
        with contextlib.suppress(LCIError):
            sessions.append(state.manager.get(context.session_id))
    before = [s.usage for s in sessions]
    if any(u is None or time.time() - u.measured_at < 0.05 for u in before):
        before = [await s.measure() for s in sessions]
        await asyncio.sleep(0.1)
    after = [await s.measure() for s in sessions]
    return [_sample(sandbox.spec.limits, before, after)]


def _sample(
    limits: Limits, before: list[SessionUsage | None], after: list[SessionUsage | None]
) -> dict[str, Any]:
    cpus = limits.cpus or os.cpu_count() or 1
    used = spent = 0.0
    for old, new in zip(before, after, strict=True):
        if old is not None and new is not None and old.cpu_s is not None and new.cpu_s:
            used += new.cpu_s - old.cpu_s
            spent = max(spent, new.measured_at - old.measured_at)
    now = datetime.now(UTC)
    return {
        "timestamp": now.isoformat().replace("+00:00", "Z"),
        "timestampUnix": int(now.timestamp()),
        "cpuCount": max(1, round(cpus)),
        "cpuUsedPct": round(min(100.0, 100 * used / spent / cpus), 2) if spent > 0 else 0.0,
        "memUsed": sum(u.memory_bytes or 0 for u in after if u is not None),
        "memTotal": limits.memory_mb * MIB,
        "diskUsed": sum(u.disk_bytes or 0 for u in after if u is not None),
        "diskTotal": limits.disk_mb * MIB,
    }


@router.get("/sandboxes/{sandbox_id}/{what}")
@router.get("/v2/sandboxes/{sandbox_id}/{what}")
async def unsupported_view(sandbox_id: str, what: str, state: State, owner: Owner) -> Response:
    sandboxes(state).get(sandbox_id, owner)
    raise NotImplementedHere(f"lci does not keep sandbox {what!r}")


@router.post("/sandboxes/{sandbox_id}/{action}")
async def unsupported_action(sandbox_id: str, action: str, state: State, owner: Owner) -> Response:
    sandboxes(state).get(sandbox_id, owner)
    raise NotImplementedHere(
        f"lci does not support {action!r} for sandboxes: they run until killed or timed out"
    )


def _refuse_unsupported(body: NewSandbox) -> None:
    unsupported = {
        "autoPause": bool(body.auto_pause),
        "mcp": bool(body.mcp),
        "volumeMounts": bool(body.volume_mounts),
    }
    for name, requested in unsupported.items():
        if requested:
            raise NotImplementedHere(f"lci does not support the sandbox option {name!r}")
    for name, value in (body.network or {}).items():
        if name == "allowPublicTraffic" or (name == "denyOut" and value == [ALL_TRAFFIC]):
            continue
        if value in (None, [], {}):
            continue
        raise NotImplementedHere(f"lci does not support the sandbox option 'network.{name}'")


def _internet(body: NewSandbox) -> bool | None:
    """Whether the sandbox may reach the network, if the request says: `allow_internet_access`,
    or `network.denyOut` of all traffic (which E2B documents as the same as no internet access).

    `network.allowPublicTraffic` changes nothing here: it asks that requests to the sandbox carry
    its traffic token, and lci asks every sandbox-addressed request for the sandbox's token."""
    denied = (body.network or {}).get("denyOut") == [ALL_TRAFFIC]
    if denied or body.allow_internet_access is False:
        return False
    return body.allow_internet_access


def _listed(sandbox: E2BSandbox) -> dict[str, Any]:
    limits = sandbox.spec.limits
    return {
        "templateID": sandbox.template,
        "sandboxID": sandbox.id,
        "clientID": CLIENT_ID,
        "startedAt": _iso(listing.started(sandbox)),
        "endAt": _iso(datetime.fromtimestamp(sandbox.end_at, UTC)),
        "cpuCount": int(limits.cpus or os.cpu_count() or 1),
        "memoryMB": limits.memory_mb,
        "diskSizeMB": limits.disk_mb,
        "state": "running",
        "envdVersion": ENVD_VERSION,
        "metadata": sandbox.metadata,
    }


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
