"""A separate MCP client process that starts a long call and waits in it, so a test can kill the
client mid-call (a real disconnect: the process and its sockets or pipes are gone at once).

    python -m tests.server.mcp.long_call http  URL KEY SESSION_ID MODE   (MODE: auto | legacy)
    python -m tests.server.mcp.long_call stdio STATE_DIR

It prints "calling" when the long call is about to be sent.
"""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.server.mcp.helpers import body, stdio_params

LONG_CELL = "import time\ntime.sleep(120)"


async def over_http(url: str, key: str, session_id: str, mode: str) -> None:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=300)
    transport = streamable_http_client(url, http_client=http)
    async with http, Client(transport, mode=mode) as client:  # type: ignore[arg-type]
        print("calling", flush=True)
        await client.call_tool("run_python", {"code": LONG_CELL, "session_id": session_id})


async def over_stdio(state_dir: str) -> None:
    async with Client(stdio_params(Path(state_dir))) as client:
        first = await client.call_tool("run_python", {"code": "x = 1"})  # a warm session
        session_id = body(first)["session_id"]
        print("calling", flush=True)
        await client.call_tool("run_python", {"code": LONG_CELL, "session_id": session_id})


def main() -> None:
    transport, *args = sys.argv[1:]
    if transport == "http":
        anyio.run(over_http, *args)
    else:
        anyio.run(over_stdio, *args)


if __name__ == "__main__":
    main()
