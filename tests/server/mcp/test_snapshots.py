"""The snapshot and fork tools over MCP (streamable HTTP of a real `lci serve`, and `lci mcp` over
stdio), driven by the SDK's own client: an undo, a fork that diverges, errors as tool results, and
another caller's session out of reach."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mcp import Client

from tests.server.helpers import LciServer
from tests.server.mcp.helpers import body, http_client, run, stdio_client


async def call(client: Client, tool: str, **args: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    data: dict[str, Any] = body(result)
    assert not result.is_error, data
    return data


async def test_snapshot_restore_list_delete(server: LciServer) -> None:
    async with http_client(server) as client:
        _, first = await run(client, "x = 1\nopen('f.txt', 'w').write('one')")
        sid = first["session_id"]
        try:
            snap = await call(client, "snapshot_session", session_id=sid)
            assert snap["session_id"] == sid and snap["executions"] == 1
            await run(client, "x = 2\nopen('f.txt', 'w').write('two')", session_id=sid)
            restored = await call(
                client, "restore_snapshot", session_id=sid, snapshot_id=snap["snapshot_id"]
            )
            assert restored["restored"] is True
            _, after = await run(client, "x, open('f.txt').read()", session_id=sid)
            assert after["result"] == "(1, 'one')"
            listed = await call(client, "list_snapshots", session_id=sid)
            assert [s["snapshot_id"] for s in listed["snapshots"]] == [snap["snapshot_id"]]
            await call(client, "delete_snapshot", session_id=sid, snapshot_id=snap["snapshot_id"])
            assert (await call(client, "list_snapshots", session_id=sid))["snapshots"] == []
            again = await client.call_tool(
                "restore_snapshot", {"session_id": sid, "snapshot_id": snap["snapshot_id"]}
            )
            assert again.is_error and body(again)["error"]["code"] == "snapshot_not_found"
        finally:
            await client.call_tool("close_session", {"session_id": sid})


async def test_fork_session_over_http(server: LciServer) -> None:
    async with http_client(server) as client:
        _, first = await run(client, "x = [1]")
        sid = first["session_id"]
        forked = await call(client, "fork_session", session_id=sid, n=2)
        ids = [f["session_id"] for f in forked["forks"]]
        try:
            assert forked["forked_from"] == sid and len(set(ids)) == 2
            assert "x" in forked["forks"][0]["kept"]
            _, grown = await run(client, "x.append(2)\nx", session_id=ids[0])
            assert grown["result"] == "[1, 2]"
            assert (await run(client, "x", session_id=ids[1]))[1]["result"] == "[1]"
            assert (await run(client, "x", session_id=sid))[1]["result"] == "[1]"
            listed = (await call(client, "list_sessions"))["sessions"]
            assert {sid, *ids} <= {s["session_id"] for s in listed}
            too_many = await client.call_tool("fork_session", {"session_id": sid, "n": 17})
            assert too_many.is_error
        finally:
            for session_id in (sid, *ids):
                await client.call_tool("close_session", {"session_id": session_id})


async def test_another_callers_session_cannot_be_snapshotted_or_forked(server: LciServer) -> None:
    with server.client() as rest:
        other = rest.post("/v1/sessions").json()["id"]  # made through the session API, not MCP
        try:
            async with http_client(server) as client:
                for tool in ("snapshot_session", "fork_session", "list_snapshots"):
                    result = await client.call_tool(tool, {"session_id": other})
                    assert result.is_error
                    assert body(result)["error"]["code"] == "session_not_found", tool
        finally:
            rest.delete(f"/v1/sessions/{other}")


async def test_fork_session_over_stdio(tmp_path: Path) -> None:
    async with stdio_client(tmp_path / "state") as client:
        _, first = await run(client, "x = 'parent'")
        forked = await call(client, "fork_session", session_id=first["session_id"])
        (child,) = forked["forks"]
        _, seen = await run(client, "x", session_id=child["session_id"])
        assert seen["result"] == "'parent'"
        listed = (await call(client, "list_sessions"))["sessions"]
        assert {s["session_id"] for s in listed} == {first["session_id"], child["session_id"]}
