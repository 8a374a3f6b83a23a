"""OpenAI's Containers API over lci sessions (see `registry` for what a container is).

    POST   /v1/containers          create (name, expires_after, memory_limit, file_ids)
    GET    /v1/containers          list, paginated (after, limit, order, name)
    GET    /v1/containers/{id}     retrieve (an expired one still answers, with status "expired";
                                    a running one with its `usage`)
    DELETE /v1/containers/{id}     delete: the session is closed, the container forgotten

`memory_limit` picks the sandbox's memory limit (1g, 4g, 16g, 64g); every other limit is the
server's. Networking follows the server's limits: only `network_policy: {"type": "disabled"}` is
accepted when the server runs sandboxes offline.
"""

from __future__ import annotations

import contextlib
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from engine.errors import BadParameter, ContainerExpired
from engine.server.http.errors import OpenAIError
from engine.server.http.openapi import errors
from engine.server.openai.containers.registry import (
    DEFAULT_MINUTES,
    MAX_MINUTES,
    Container,
    ContainerRegistry,
)
from engine.server.openai.paging import Order, page
from engine.server.runtime.state import Owner, State

router = APIRouter(prefix="/v1/containers", tags=["OpenAI-compatible"])

_COMMON = (401, 413, 500)
# OpenAPI links: a created container's id is what the other operations take (for stateful tools).
_CONTAINER_ID = {"container_id": "$response.body#/id"}
_CREATED: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The container, running",
        "links": {
            name: {"operationId": name, "parameters": _CONTAINER_ID}
            for name in (
                "retrieve_container",
                "delete_container",
                "create_container_file",
                "list_container_files",
            )
        },
    }
}


class ExpiresAfter(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    anchor: Literal["last_active_at"]
    minutes: int = Field(ge=1, le=MAX_MINUTES)


class NetworkPolicy(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    type: Literal["disabled", "allowlist"]


class CreateContainer(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(min_length=1, max_length=256)
    expires_after: ExpiresAfter | None = Field(
        None, description=f"Default: {DEFAULT_MINUTES} minutes after the last activity."
    )
    file_ids: list[str] = Field(default_factory=list, max_length=100)
    memory_limit: Literal["1g", "4g", "16g", "64g"] | None = Field(
        None, description="The sandbox's memory limit (default: the server's)."
    )
    network_policy: NetworkPolicy | None = None
    skills: list[Any] | None = Field(None, description="Accepted and ignored.")


@router.post(
    "",
    operation_id="create_container",
    responses={**_CREATED, **errors(OpenAIError, 400, 404, 429, 503, *_COMMON)},
)
async def create_container(body: CreateContainer, state: State, owner: Owner) -> JSONResponse:
    """Start a container (an lci session) with the given files copied in."""
    policy = body.network_policy
    if policy is not None and policy.type != "disabled" and not state.settings.limits.network:
        raise BadParameter(
            "this server runs sandboxes without network access; "
            'only network_policy {"type": "disabled"} is possible',
            "network_policy",
        )
    await state.part(ContainerRegistry).sweep()
    container = await state.part(ContainerRegistry).create(
        body.name,
        minutes=body.expires_after.minutes if body.expires_after else DEFAULT_MINUTES,
        memory_limit=body.memory_limit,
        file_ids=body.file_ids,
        owner=owner,
    )
    return JSONResponse(_wire(container))


@router.get("", operation_id="list_containers", responses=errors(OpenAIError, 400, *_COMMON))
async def list_containers(
    state: State,
    owner: Owner,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    order: Order = "desc",
    name: str | None = None,
) -> JSONResponse:
    await state.part(ContainerRegistry).sweep()
    containers = [
        c for c in state.part(ContainerRegistry).all(owner) if name is None or c.name == name
    ]
    return JSONResponse(
        page(containers, id_of=lambda c: c.id, wire=_wire, after=after, limit=limit, order=order)
    )


@router.get(
    "/{container_id}",
    operation_id="retrieve_container",
    responses=errors(OpenAIError, 404, *_COMMON),
)
async def retrieve_container(container_id: str, state: State, owner: Owner) -> JSONResponse:
    """The container; a running one also says what its sandbox uses now (`usage`: CPU seconds,
    memory and its peak, disk, network bytes), an lci field beside OpenAI's."""
    registry = state.part(ContainerRegistry)
    await registry.sweep()
    container = registry.get(container_id, owner=owner)
    wire = _wire(container)
    if not container.expired:
        with contextlib.suppress(ContainerExpired):
            usage = await registry.session(container).measure()
            wire["usage"] = usage.model_dump() if usage is not None else None
    return JSONResponse(wire)


@router.delete(
    "/{container_id}", operation_id="delete_container", responses=errors(OpenAIError, 404, *_COMMON)
)
async def delete_container(container_id: str, state: State, owner: Owner) -> JSONResponse:
    """Close the container's session (a running execution is stopped) and forget it."""
    await state.part(ContainerRegistry).delete(container_id, owner)
    return JSONResponse({"id": container_id, "object": "container.deleted", "deleted": True})


def _wire(container: Container) -> dict[str, Any]:
    return container.wire()
