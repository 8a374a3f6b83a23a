"""MCP over streamable HTTP at `/mcp` of a real `lci serve`, driven by the SDK's own client: state
across calls, figures as images, errors and timeouts as results, files, the API key, ownership,
concurrency, a client that disconnects mid-call, and nothing left running after the server stops."""

from __future__ import annotations

import asyncio
import base64
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import httpx2
import psutil
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, EmbeddedResource, ImageContent, ResourceLink

from tests.server.helpers import REPO, FakeModel, LciServer
from tests.server.mcp.helpers import body, http_client, run, wait_gone

KEY = "mcp-test-key"
INLINE = 4096  # download_file embeds files up to this size, links larger ones
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def start(fake: FakeModel, **env: str) -> LciServer:
    return LciServer(
        fake.base_url,
        api_key=KEY,
        env={
            "LCI_SERVER_MCP_INLINE_BYTES": str(INLINE),
            "LCI_SUBPROCESS_WARM_POOL": "0",
            **env,
        },
    )


@pytest.fixture(scope="module")
def server(shared_fake: FakeModel) -> Iterator[LciServer]:
    with start(shared_fake) as running:
        yield running
        running.stop()
        assert "Traceback" not in running.logs(), running.logs()


async def test_tools_are_described_for_models(server: LciServer) -> None:
    async with http_client(server) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        templates = (await client.list_resource_templates()).resource_templates
    assert set(tools) == {
        "run_python",
        "run_command",
        "create_session",
        "close_session",
        "list_sessions",
        "list_files",
        "upload_file",
        "download_file",
        "snapshot_session",
        "restore_snapshot",
        "list_snapshots",
        "delete_snapshot",
        "fork_session",
    }
    run_python = tools["run_python"]
    assert run_python.input_schema["required"] == ["code"]
    for words in ("session_id", "persist", "timeout", "image", "KeyboardInterrupt"):
        assert words in (run_python.description or ""), words
    assert [t.uri_template for t in templates] == ["lci://sessions/{session_id}/files/{+path}"]


@pytest.mark.parametrize("mode", ["auto", "legacy"])  # the 2026 protocol, and the handshake era
async def test_state_is_kept_across_calls_given_the_session_id(
    server: LciServer, mode: str
) -> None:
    async with http_client(server, mode=mode) as client:
        result, first = await run(client, "import math\nx = 41\nprint('hi')\nx + 1")
        assert not result.is_error
        assert (first["outcome"], first["result"], first["stdout"]) == ("completed", "42", "hi\n")
        assert first["new_session"] is True
        session_id = first["session_id"]
        _, second = await run(client, "math.sqrt(x + 8)", session_id=session_id)
        assert (second["session_id"], second["result"], second["new_session"]) == (
            session_id,
            "7.0",
            False,
        )
        _, fresh = await run(client, "'x' in globals()")
        assert fresh["session_id"] != session_id and fresh["result"] == "False"
        await client.call_tool("close_session", {"session_id": fresh["session_id"]})
        await client.call_tool("close_session", {"session_id": session_id})


async def test_run_command_shares_the_sessions_sandbox(server: LciServer) -> None:
    async with http_client(server) as client:
        _, cell = await run(client, "open('made_by_python.txt', 'w').write('py')")
        session_id = cell["session_id"]
        shell = body(
            await client.call_tool(
                "run_command",
                {
                    "command": "cat made_by_python.txt; echo oops >&2; exit 4",
                    "session_id": session_id,
                },
            )
        )
        assert (shell["stdout"], shell["stderr"], shell["exit_code"]) == ("py", "oops\n", 4)
        assert shell["session_id"] == session_id and shell["timed_out"] is False
        late = body(
            await client.call_tool(
                "run_command", {"command": "sleep 30", "session_id": session_id, "timeout_s": 0.5}
            )
        )
        assert late["timed_out"] is True and late["exit_code"] == -9
        fresh = body(await client.call_tool("run_command", {"command": "seq 1 200000"}))
        assert fresh["new_session"] is True and fresh["truncated"] is True
        assert fresh["stdout"].startswith("1\n2\n")
        for sid in (session_id, fresh["session_id"]):
            await client.call_tool("close_session", {"session_id": sid})


async def test_a_figure_comes_back_as_image_content(server: LciServer) -> None:
    code = (
        "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2], label='visits')\n"
        "plt.title('Daily')\nplt.legend()\nplt.show()"
    )
    async with http_client(server) as client:
        result, data = await run(client, code)
        await client.call_tool("close_session", {"session_id": data["session_id"]})
    images = [block for block in result.content if isinstance(block, ImageContent)]
    assert len(images) == 1 == data["images"]
    assert images[0].mime_type == "image/png"
    assert base64.b64decode(images[0].data).startswith(PNG_MAGIC)
    # The model also reads what the figure shows, in a line: its chart's kind, title and series.
    assert data["displays"] == ["[chart: line 'Daily'; series: visits]"]


async def test_an_error_and_a_timeout_are_results(server: LciServer) -> None:
    async with http_client(server) as client:
        result, error = await run(client, "y = 5\n1 / 0")
        session_id = error["session_id"]
        assert result.is_error is False  # the model reads it and fixes its code
        assert error["outcome"] == "error"
        assert error["error"]["name"] == "ZeroDivisionError"
        assert "1 / 0" in error["error"]["traceback"]
        started = time.monotonic()
        result, late = await run(
            client, "import time\nwhile True: time.sleep(0.01)", session_id=session_id, timeout_s=1
        )
        assert time.monotonic() - started < 6
        assert result.is_error is False
        assert (late["outcome"], late["state_preserved"]) == ("interrupted", True)
        _, after = await run(client, "y", session_id=session_id)
        assert after["result"] == "5"
        await client.call_tool("close_session", {"session_id": session_id})


async def test_refusals_are_tool_errors(server: LciServer) -> None:
    async with http_client(server) as client:
        result, data = await run(client, "1", session_id="0123456789abcdef")
        assert result.is_error and data["error"]["code"] == "session_not_found"
        bad = await client.call_tool(
            "create_session", {"limits": {"memory_mb": 1}}
        )  # below the minimum
        assert bad.is_error


async def test_a_second_call_on_a_busy_session_is_refused(server: LciServer) -> None:
    async with http_client(server) as client, http_client(server) as other:
        session_id = body(await client.call_tool("create_session", {}))["session_id"]
        slow = asyncio.ensure_future(
            run(client, "import time\ntime.sleep(2)\n'slow'", session_id=session_id)
        )
        with server.client() as rest:
            deadline = time.monotonic() + 20
            while rest.get(f"/v1/sessions/{session_id}").json()["state"] != "busy":
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
        refused, data = await run(other, "1", session_id=session_id)
        assert refused.is_error and data["error"]["code"] == "session_busy"
        _, done = await slow
        assert done["result"] == "'slow'"
        await client.call_tool("close_session", {"session_id": session_id})


async def test_files_upload_list_download_and_link(server: LciServer) -> None:
    async with http_client(server) as client:
        created = body(await client.call_tool("create_session", {"limits": {"timeout_s": 5}}))
        session_id = created["session_id"]
        assert created["limits"]["timeout_s"] == 5 and created["limits"]["network"] is False
        up = await client.call_tool(
            "upload_file",
            {"session_id": session_id, "path": "data/in.csv", "content": "a,b\n1,2\n"},
        )
        assert body(up)["size"] == 8
        _, out = await run(
            client,
            "import pandas as pd\ndf = pd.read_csv('data/in.csv')\n"
            "open('big.bin', 'wb').write(bytes(range(256)) * 64)\nint(df.a[0] + df.b[0])",
            session_id=session_id,
        )
        assert out["result"] == "3"
        files = body(await client.call_tool("list_files", {"session_id": session_id}))["files"]
        assert {f["path"]: f["size"] for f in files} == {"data/in.csv": 8, "big.bin": 16384}
        small = await client.call_tool(
            "download_file", {"session_id": session_id, "path": "data/in.csv"}
        )
        [embedded] = small.content
        assert isinstance(embedded, EmbeddedResource)
        assert getattr(embedded.resource, "text", None) == "a,b\n1,2\n"
        large = await client.call_tool(
            "download_file", {"session_id": session_id, "path": "big.bin"}
        )
        links = [block for block in large.content if isinstance(block, ResourceLink)]
        assert len(links) == 1 and links[0].size == 16384
        url = f"{server.url}/v1/sessions/{session_id}/files/big.bin"
        assert links[0].uri == url
        fetched = httpx.get(url, headers=server.headers)
        assert fetched.content == bytes(range(256)) * 64
        read = await client.read_resource(f"lci://sessions/{session_id}/files/data/in.csv")
        assert base64.b64decode(getattr(read.contents[0], "blob", "")) == b"a,b\n1,2\n"
        await client.call_tool("close_session", {"session_id": session_id})


async def test_reading_a_missing_resource_is_resource_not_found(server: LciServer) -> None:
    """A file or session that does not exist is the spec's "resource not found" (-32602 since
    SEP-2164, which retired -32002), not an internal error (-32603)."""
    async with http_client(server) as client:
        session_id = body(await client.call_tool("create_session", {}))["session_id"]
        for uri, said in (
            (f"lci://sessions/{session_id}/files/nope.txt", "nope.txt"),
            ("lci://sessions/no-such-session/files/x.txt", "no-such-session"),
        ):
            with pytest.raises(MCPError) as refused:
                await client.read_resource(uri)
            assert refused.value.error.code == INVALID_PARAMS, refused.value.error
            assert said in refused.value.error.message
        await client.call_tool("close_session", {"session_id": session_id})


async def test_a_client_without_the_key_is_refused(server: LciServer) -> None:
    refused = httpx.post(
        server.url + "/mcp",
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        headers={"Accept": "application/json, text/event-stream"},
    )
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == "Bearer"
    for key in (None, "wrong-key"):
        assert await _statuses_seen_by_the_sdk_client(server, key) == {401}


async def _statuses_seen_by_the_sdk_client(server: LciServer, key: str | None) -> set[int]:
    statuses: set[int] = set()

    async def record(response: httpx2.Response) -> None:
        statuses.add(response.status_code)

    headers = {"Authorization": f"Bearer {key}"} if key else {}
    http = httpx2.AsyncClient(headers=headers, event_hooks={"response": [record]})
    transport = streamable_http_client(server.url + "/mcp", http_client=http)
    with pytest.raises((MCPError, ExceptionGroup)):  # the SDK's report of a refused request
        async with http, Client(transport) as client:
            await client.list_tools()
    return statuses


def test_dns_rebinding_is_refused(server: LciServer) -> None:
    response = httpx.post(
        server.url + "/mcp",
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        headers={
            **server.headers,
            "Host": "attacker.example",
            "Accept": "application/json, text/event-stream",
        },
    )
    assert response.status_code in (403, 421), response.text


async def test_sessions_belong_to_the_mcp_caller(server: LciServer) -> None:
    with server.client() as rest:
        other = rest.post("/v1/sessions").json()["id"]  # made through the session API, not MCP
        async with http_client(server) as client:
            result, data = await run(client, "1", session_id=other)
            assert result.is_error and data["error"] == {
                "code": "session_not_found",
                "message": f"no session {other!r}",
            }
            _, mine = await run(client, "1")
            listed = body(await client.call_tool("list_sessions", {}))["sessions"]
            assert [s["session_id"] for s in listed] == [mine["session_id"]]
            assert len(mine["session_id"]) >= 16
            await client.call_tool("close_session", {"session_id": mine["session_id"]})
        rest.delete(f"/v1/sessions/{other}")


async def test_eight_concurrent_clients(server: LciServer) -> None:
    async def one(i: int) -> tuple[str, str]:
        async with http_client(server) as client:
            _, first = await run(client, f"n = {i}\nimport time\ntime.sleep(0.2)")
            _, second = await run(client, "n * 10", session_id=first["session_id"])
            await client.call_tool("close_session", {"session_id": first["session_id"]})
            return first["session_id"], second["result"]

    results = await asyncio.gather(*(one(i) for i in range(8)))
    assert [r for _, r in results] == [str(i * 10) for i in range(8)]
    assert len({s for s, _ in results}) == 8


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_client_that_disconnects_stops_its_execution(server: LciServer, mode: str) -> None:
    async with http_client(server) as client:
        session_id = body(await client.call_tool("create_session", {}))["session_id"]
    await asyncio.to_thread(_wait_busy_then_kill_client, server, session_id, mode)
    with server.client() as rest:
        deadline = time.monotonic() + 10
        while rest.get(f"/v1/sessions/{session_id}").json()["state"] != "idle":
            assert time.monotonic() < deadline, "the execution kept running after the disconnect"
            time.sleep(0.05)
        # The cell was interrupted, not left to run: the session takes the next one at once.
        done = rest.post(f"/v1/sessions/{session_id}/execute", json={"code": "2 + 2"}).json()
        assert done["outputs"][-1]["data"]["text/plain"] == "4"
        rest.delete(f"/v1/sessions/{session_id}")


def _wait_busy_then_kill_client(server: LciServer, session_id: str, mode: str) -> None:
    args = ["http", server.url + "/mcp", KEY, session_id, mode]
    client = subprocess.Popen(
        [sys.executable, "-m", "tests.server.mcp.long_call", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert client.stdout is not None and client.stdout.readline().strip() == "calling"
        with server.client() as rest:
            deadline = time.monotonic() + 20
            while rest.get(f"/v1/sessions/{session_id}").json()["state"] != "busy":
                assert time.monotonic() < deadline, "the long call never started"
                time.sleep(0.05)
    finally:
        client.kill()
        client.wait()
        assert client.stdout is not None
        client.stdout.close()


async def test_nothing_is_left_running_after_the_server_stops(shared_fake: FakeModel) -> None:
    with start(shared_fake, LCI_SERVER_SHUTDOWN_GRACE_S="1") as server:
        async with http_client(server) as client:
            for _ in range(2):
                await run(client, "import numpy")
            running = asyncio.ensure_future(run(client, "import time\ntime.sleep(60)"))
            deadline = time.monotonic() + 20
            with server.client() as rest:
                while not any(
                    s["state"] == "busy" for s in rest.get("/v1/sessions").json()["sessions"]
                ):
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.05)
            children = psutil.Process(server.process.pid).children(recursive=True)
            assert children
            status = await asyncio.to_thread(server.stop)
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
        assert status == -signal.SIGTERM, server.logs()
        # uvicorn cancels the call still running after the grace period, then the lifespan
        # closes every session: no sandbox process outlives the server.
        assert wait_gone(children) == []
