"""The MCP tools that keep and branch a session's state: snapshot, restore, list and delete
snapshots, and fork a session into new ones (how lci keeps them: docs/snapshots.md)."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult, ToolAnnotations
from pydantic import Field

from engine.errors import LCIError
from engine.models import ForkResult, SnapshotInfo
from engine.server.mcp.render import error_result, json_result
from engine.server.mcp.workspace import Caller, Workspace

MAX_FORKS = 16

SNAPSHOT_SESSION = """\
Save the whole state of a session: every variable, object, import and open file of its Python
interpreter, and its working directory's files. Take one before a risky step; restore_snapshot
brings the session back to exactly that state if the step goes wrong, as often as needed.
Returns snapshot_id, executions (cells run when it was taken), memory_bytes and disk_bytes it
holds. A session keeps a limited number of snapshots: delete_snapshot frees one. Not while code
runs in the session."""

RESTORE_SNAPSHOT = """\
Bring a session back to a snapshot taken with snapshot_session: its variables, objects and files
become what they were then (later changes are undone). The snapshot is kept, so it can be
restored again."""

LIST_SNAPSHOTS = """\
List a session's snapshots, oldest first: snapshot_id, executions (cells run when it was taken),
created_at (Unix seconds), memory_bytes and disk_bytes each holds now."""

DELETE_SNAPSHOT = """\
Delete a snapshot of a session, freeing its memory and disk (and room for another snapshot)."""

FORK_SESSION = """\
Copy a session into n new sessions (1-16) that start with its variables, objects and files (or
with a snapshot's, given snapshot_id), to try several approaches side by side: each new session
is separate, and what one does is not seen by the others or by the original. Returns one entry
per new session: session_id, kept (the variables carried over) and not_kept (variables that
could not be carried, each with the reason: define them again). Each new session counts as a
session of yours; close those you no longer need."""

SessionId = Annotated[str, Field(description="A session_id returned by run_python.")]
SnapshotId = Annotated[str, Field(description="A snapshot_id returned by snapshot_session.")]


def add_snapshot_tools(server: MCPServer[Any], context: Any) -> None:
    @server.tool(description=SNAPSHOT_SESSION, annotations=ToolAnnotations(title="Snapshot"))
    async def snapshot_session(session_id: SessionId, ctx: Context[Any]) -> CallToolResult:
        workspace, caller = _of(context, ctx)
        try:
            info = await workspace.get(caller, session_id).snapshot()
        except LCIError as exc:
            return error_result(exc)
        return json_result(snapshot_summary(info))

    @server.tool(
        description=RESTORE_SNAPSHOT,
        annotations=ToolAnnotations(title="Restore snapshot", destructive_hint=True),
    )
    async def restore_snapshot(
        session_id: SessionId, snapshot_id: SnapshotId, ctx: Context[Any]
    ) -> CallToolResult:
        workspace, caller = _of(context, ctx)
        try:
            info = await workspace.get(caller, session_id).restore(snapshot_id)
        except LCIError as exc:
            return error_result(exc)
        return json_result({**snapshot_summary(info), "restored": True})

    @server.tool(
        description=LIST_SNAPSHOTS,
        annotations=ToolAnnotations(title="List snapshots", read_only_hint=True),
    )
    async def list_snapshots(session_id: SessionId, ctx: Context[Any]) -> CallToolResult:
        workspace, caller = _of(context, ctx)
        try:
            found = await workspace.get(caller, session_id).list_snapshots()
        except LCIError as exc:
            return error_result(exc)
        return json_result({"session_id": session_id, "snapshots": [_listed(s) for s in found]})

    @server.tool(
        description=DELETE_SNAPSHOT,
        annotations=ToolAnnotations(title="Delete snapshot", destructive_hint=True),
    )
    async def delete_snapshot(
        session_id: SessionId, snapshot_id: SnapshotId, ctx: Context[Any]
    ) -> CallToolResult:
        workspace, caller = _of(context, ctx)
        try:
            await workspace.get(caller, session_id).delete_snapshot(snapshot_id)
        except LCIError as exc:
            return error_result(exc)
        body = {"session_id": session_id, "snapshot_id": snapshot_id, "deleted": True}
        return json_result(body)

    @server.tool(description=FORK_SESSION, annotations=ToolAnnotations(title="Fork session"))
    async def fork_session(
        session_id: SessionId,
        ctx: Context[Any],
        n: Annotated[int, Field(ge=1, le=MAX_FORKS, description="How many copies.")] = 1,
        snapshot_id: Annotated[
            str | None, Field(description="Copy this snapshot instead of the current state.")
        ] = None,
    ) -> CallToolResult:
        workspace, caller = _of(context, ctx)
        try:
            forks = await workspace.fork(caller, session_id, n, snapshot_id)
        except LCIError as exc:
            return error_result(exc)
        return json_result({"forked_from": session_id, "forks": [fork_summary(f) for f in forks]})


def _of(context: Any, ctx: Context[Any]) -> tuple[Workspace, Caller]:
    workspace: Workspace
    caller: Caller
    workspace, caller = context(ctx)
    return workspace, caller


def snapshot_summary(info: SnapshotInfo) -> dict[str, Any]:
    return {"session_id": info.session_id, **_listed(info)}


def _listed(info: SnapshotInfo) -> dict[str, Any]:
    return {
        "snapshot_id": info.id,
        "executions": info.executions,
        "created_at": info.created_at,
        "memory_bytes": info.memory_bytes,
        "disk_bytes": info.disk_bytes,
        "files": info.files,
    }


def fork_summary(fork: ForkResult) -> dict[str, Any]:
    return {"session_id": fork.session.id, "kept": fork.kept, "not_kept": fork.not_kept}
