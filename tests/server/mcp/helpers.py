"""Helpers of the MCP tests: the SDK's own client over both transports, and readers of tool results.

async with http_client(server) as client:        # streamable HTTP against `lci serve`
    result = await client.call_tool("run_python", {"code": "1 + 1"})
async with stdio_client(tmp_path) as client:     # `lci mcp` started as a subprocess
    ...
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import psutil
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult, TextContent

from tests.server.helpers import REPO, SMALL_LIMITS, LciServer

# Small limits: every test's cells are tiny, and a timeout test should not wait long.
MCP_LIMITS = {**SMALL_LIMITS, "timeout_s": 8}


@asynccontextmanager
async def http_client(server: LciServer, key: str | None = "", **kw: Any) -> AsyncIterator[Client]:
    """An MCP client of the server's `/mcp`; `key` "" means the server's own key, None no key."""
    token = server.api_key if key == "" else key
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    http = httpx2.AsyncClient(headers=headers, timeout=60)
    transport = streamable_http_client(server.url + "/mcp", http_client=http)
    async with http, Client(transport, **kw) as client:
        yield client


def stdio_env(state_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LCI_")}
    env.update(
        LCI_STATE_DIR=str(state_dir),
        LCI_LIMITS=json.dumps(MCP_LIMITS),
        LCI_INTERRUPT_GRACE_S="0.5",
        LCI_SUBPROCESS_WARM_POOL="0",
        LCI_MAX_SESSIONS="4",
        **extra,
    )
    return env


def stdio_params(state_dir: Path, *args: str, **env: str) -> StdioServerParameters:
    """`python -m engine.cli mcp` from the repository, with small limits."""
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "engine.cli", "mcp", "--backend", "subprocess", *args],
        env=stdio_env(state_dir, **env),
        cwd=str(REPO),
    )


@asynccontextmanager
async def stdio_client(state_dir: Path, *args: str, **env: str) -> AsyncIterator[Client]:
    async with Client(stdio_params(state_dir, *args, **env)) as client:
        yield client


def body(result: CallToolResult) -> Any:
    """The JSON of a tool result's first (text) block."""
    first = result.content[0]
    assert isinstance(first, TextContent), result
    return json.loads(first.text)


async def run(client: Client, code: str, **args: Any) -> tuple[CallToolResult, dict[str, Any]]:
    result = await client.call_tool("run_python", {"code": code, **args})
    return result, body(result)


def mcp_servers() -> list[psutil.Process]:
    """`lci mcp` processes started by this test process (through the SDK's stdio client)."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "mcp" in child.cmdline() and "engine.cli" in child.cmdline():
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


def wait_gone(processes: list[psutil.Process], timeout_s: float = 10) -> list[psutil.Process]:
    """The processes still alive after `timeout_s` (zombies count as gone)."""
    deadline = time.monotonic() + timeout_s
    alive = list(processes)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if _running(p)]
        time.sleep(0.05)
    return alive


def _running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
