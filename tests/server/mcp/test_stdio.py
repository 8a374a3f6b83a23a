"""MCP over stdio: `lci mcp` started as a subprocess by the SDK's own client. State across calls,
figures as images, errors and timeouts as results, code that cannot touch the protocol stream, a
client that goes away mid-call, and nothing left running after the server stops."""

from __future__ import annotations

import argparse
import asyncio
import base64
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from mcp_types import ImageContent

from engine.cli.mcp_stdio import add_parser, configure
from tests.server.helpers import REPO
from tests.server.mcp.helpers import body, mcp_servers, run, stdio_client, wait_gone

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


async def test_state_figures_errors_and_timeouts(tmp_path: Path) -> None:
    async with stdio_client(tmp_path) as client:
        tools = {tool.name for tool in (await client.list_tools()).tools}
        assert {"run_python", "create_session", "download_file"} <= tools
        _, first = await run(client, "x = 20\nx + 1")
        session_id = first["session_id"]
        assert (first["outcome"], first["result"]) == ("completed", "21")
        _, second = await run(client, "x * 2", session_id=session_id)
        assert second["result"] == "40"

        figure, shown = await run(
            client,
            "import matplotlib.pyplot as plt\nfig, ax = plt.subplots()\nax.bar([1, 2], [3, 4])",
            session_id=session_id,
        )
        images = [b for b in figure.content if isinstance(b, ImageContent)]
        assert len(images) == 1 == shown["images"]
        assert base64.b64decode(images[0].data).startswith(PNG_MAGIC)

        failed, error = await run(client, "raise ValueError('bad input')", session_id=session_id)
        assert failed.is_error is False
        assert error["error"]["name"] == "ValueError"
        assert "bad input" in error["error"]["traceback"]

        started = time.monotonic()
        late_result, late = await run(
            client, "while True: pass", session_id=session_id, timeout_s=1
        )
        assert late_result.is_error is False
        assert late["outcome"] == "interrupted" and late["state_preserved"] is True
        assert time.monotonic() - started < 6
        _, kept = await run(client, "x", session_id=session_id)
        assert kept["result"] == "20"


async def test_files_resources_and_capacity_without_http(tmp_path: Path) -> None:
    async with stdio_client(tmp_path, "--inline-bytes", "1024") as client:
        session_id = body(await client.call_tool("create_session", {}))["session_id"]
        await client.call_tool(
            "upload_file",
            {"session_id": session_id, "path": "blob.bin", "content": "AAEC", "encoding": "base64"},
        )
        _, out = await run(
            client,
            "open('out.txt', 'w').write('y' * 2000)\nopen('blob.bin', 'rb').read()",
            session_id=session_id,
        )
        assert out["result"] == "b'\\x00\\x01\\x02'"
        large = await client.call_tool(
            "download_file", {"session_id": session_id, "path": "out.txt"}
        )
        uri = f"lci://sessions/{session_id}/files/out.txt"
        assert body(large)["url"] == uri  # no HTTP API here: the link is the resource
        read = await client.read_resource(uri)
        assert base64.b64decode(getattr(read.contents[0], "blob", "")) == b"y" * 2000
        bad = await client.call_tool(
            "upload_file",
            {"session_id": session_id, "path": "x", "content": "%%%", "encoding": "base64"},
        )
        assert bad.is_error and body(bad)["error"]["param"] == "content"
        for _ in range(3):  # LCI_MAX_SESSIONS=4
            await client.call_tool("create_session", {})
        full, refused = await run(client, "1")
        assert full.is_error and refused["error"]["code"] == "capacity_exceeded"
        listed = body(await client.call_tool("list_sessions", {}))["sessions"]
        assert len(listed) == 4


async def test_code_cannot_read_or_write_the_protocol_stream(tmp_path: Path) -> None:
    async with stdio_client(tmp_path) as client:
        _, out = await run(
            client,
            'import os, sys\nos.write(1, b\'{"jsonrpc": "2.0", "id": 99}\\n\')\n'
            "print('printed')\nsys.stdin.read()",
        )
        assert out["result"] == "''"  # the sandbox's stdin is empty, not the client's stream
        assert "printed" in out["stdout"]
        _, again = await run(client, "1 + 1", session_id=out["session_id"])
        assert again["result"] == "2"  # the stream is intact


@pytest.mark.slow
async def test_eight_concurrent_clients(tmp_path: Path) -> None:
    # Eight servers on a shared machine: each starts its one sandbox cold, with nothing preloaded.
    light = {"LCI_FORKSERVER": "false", "LCI_PRELOAD": "[]"}

    async def one(i: int) -> str:
        async with stdio_client(tmp_path / str(i), **light) as client:
            _, first = await run(client, f"n = {i}")
            _, second = await run(client, "n * 10", session_id=first["session_id"])
            return str(second["result"])

    assert await asyncio.gather(*(one(i) for i in range(8))) == [str(i * 10) for i in range(8)]


async def test_nothing_is_left_running_after_the_server_stops(tmp_path: Path) -> None:
    async with stdio_client(tmp_path) as client:
        for _ in range(2):
            await run(client, "import numpy")
        [server] = mcp_servers()
        children = server.children(recursive=True)
        assert children
    assert wait_gone([server, *children]) == []


def test_a_client_that_goes_away_mid_call_stops_it(tmp_path: Path) -> None:
    client = subprocess.Popen(
        [sys.executable, "-m", "tests.server.mcp.long_call", "stdio", str(tmp_path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert client.stdout is not None and client.stdout.readline().strip() == "calling"
        [server] = [p for p in psutil.Process(client.pid).children() if "mcp" in p.cmdline()]
        time.sleep(1)  # the long cell is running
        descendants = server.children(recursive=True)
        assert descendants
    finally:
        client.kill()
        client.wait()
        assert client.stdout is not None
        client.stdout.close()
    # Its stdin closed with the client: the server stops the cell, closes the session and exits.
    assert wait_gone([server, *descendants]) == []


async def test_sigterm_closes_every_session(tmp_path: Path) -> None:
    async with stdio_client(tmp_path) as client:
        running = asyncio.ensure_future(run(client, "import time\ntime.sleep(60)"))
        await asyncio.sleep(1.5)
        [server] = mcp_servers()
        children = server.children(recursive=True)
        server.terminate()
        assert wait_gone([server, *children]) == []
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


def test_options_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LCI_LIMITS", '{"timeout_s": 9, "disk_mb": 40}')
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["mcp", "--timeout", "2.5", "--memory-mb", "300", "--max-sessions", "3"]
    )
    settings = configure(args)
    assert (settings.limits.timeout_s, settings.limits.memory_mb) == (2.5, 300)
    assert settings.limits.disk_mb == 40  # what the options leave alone comes from LCI_LIMITS
    assert settings.max_sessions == 3
