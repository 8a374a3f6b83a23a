"""run_python results sized for a model: a large output is cut to the tool loop's inline budget
with the whole of it kept in the session (named in the text), a time limit that fired is said with
the limit, and `lci mcp` starts for a client whose PATH does not hold `lci`."""

from __future__ import annotations

import base64
import shutil
import sys
from pathlib import Path

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp_types import BlobResourceContents, TextContent

from engine.orchestrator import LoopOptions
from tests.server.mcp.helpers import body, run, stdio_client, stdio_env

BUDGET = LoopOptions().result_budget_bytes
BIG = (
    "print('HEAD-MARK')\n"
    "for i in range(15000): print(f'line {i:05d} ' + 'x' * 40)\n"
    "print('TAIL-MARK')\n"
    "import sys; sys.stderr.write('err ' * 5000)\n"
    "'RESULT-' * 3000"
)


async def test_a_large_output_is_cut_to_the_budget_and_kept_whole_in_the_session(
    tmp_path: Path,
) -> None:
    async with stdio_client(tmp_path) as client:  # the default output limit: 1 MiB
        result, data = await run(client, BIG)
        text = result.content[0]
        assert isinstance(text, TextContent)
        assert len(text.text.encode()) <= BUDGET
        assert data["outcome"] == "completed" and data["truncated"] is True
        assert data["stdout"].startswith("HEAD-MARK") and "TAIL-MARK" in data["stdout"]
        assert "bytes of output omitted" in data["stdout"]
        assert data["stderr"] and data["result"].startswith("'RESULT-")
        assert data["full_output"] == ".lci/output.txt"
        assert ".lci/output.txt" in data["note"] and str(BUDGET) in data["note"]

        session_id = data["session_id"]
        _, whole = await run(
            client,
            "t = open('.lci/output.txt').read()\n"
            "('line 10000 ' in t, t.count('\\nline '), 'TAIL-MARK' in t, t.count('err '))",
            session_id=session_id,
        )
        assert whole["result"] == "(True, 15000, True, 5000)"
        uri = f"lci://sessions/{session_id}/files/.lci/output.txt"
        resource = (await client.read_resource(uri)).contents[0]
        assert isinstance(resource, BlobResourceContents)
        assert b"line 14999" in base64.b64decode(resource.blob)

        _, small = await run(client, "print('short')", session_id=session_id)
        assert "note" not in small and "full_output" not in small
        assert small["stdout"] == "short\n"


async def test_a_timeout_is_said_with_the_limit_that_fired(tmp_path: Path) -> None:
    async with stdio_client(tmp_path) as client:
        _, late = await run(client, "while True: pass", timeout_s=1.5)
        assert late["outcome"] == "interrupted"
        assert late["note"].startswith("Timeout:") and "time limit of 1.5 s" in late["note"]
        assert late["error"]["name"] == "KeyboardInterrupt"
        assert late["error"]["value"] == "time limit of 1.5 s"
        _, fine = await run(client, "1", session_id=late["session_id"])
        assert "note" not in fine


@pytest.mark.parametrize("how", ["absolute_lci", "python_m"])
async def test_a_client_without_lci_on_its_path_starts_it(tmp_path: Path, how: str) -> None:
    """The two recipes of docs/mcp.md: the venv's `lci` by absolute path, or its python with
    `-m engine.cli`; the client's PATH has neither, and the working directory is elsewhere."""
    lci = shutil.which("lci", path=str(Path(sys.executable).parent))
    if how == "absolute_lci" and lci is None:
        pytest.skip("this environment has no lci console script beside its python")
    command, args = (
        (lci, ["mcp"]) if how == "absolute_lci" else (sys.executable, ["-m", "engine.cli", "mcp"])
    )
    assert command is not None
    env = stdio_env(tmp_path / "state", PATH="/usr/bin:/bin")
    params = StdioServerParameters(command=command, args=args, env=env, cwd=str(tmp_path))
    async with Client(params) as client:
        _, answer = await run(client, "6 * 7")
        assert answer["result"] == "42"
        assert body(await client.call_tool("list_sessions", {}))["sessions"]
