"""The MCP tool that runs a shell command in a session's sandbox, beside its Python interpreter."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult, ToolAnnotations
from pydantic import Field

from engine.errors import LCIError
from engine.models import MIB
from engine.server.mcp.render import error_result
from engine.server.mcp.shape import sized_result
from engine.server.mcp.workspace import Caller, Workspace

RUN_COMMAND = """\
Run a shell command (bash) in a session's sandbox, beside its Python interpreter: the same files,
working directory, user, limits and network as run_python. Use it for pip, git, pytest, a build,
or to look at files; use run_python for Python state that must persist.

State: omit session_id to start a new session; pass the result's session_id back to continue.
Files persist; shell state (cd, variables) does not carry to the next call: chain with && or ;.

Result: a JSON object with session_id, exit_code (negative: killed by that signal; null if it
never ended), stdout, stderr, timed_out, truncated (output passed the session's limit), error
(why it ended other than by itself). Each call has a timeout (default the session's, or
timeout_s) after which the command and everything it started are killed. The text is at most
16,000 bytes, as for run_python."""


def add_command_tools(server: MCPServer[Any], context: Any) -> None:
    @server.tool(description=RUN_COMMAND, annotations=ToolAnnotations(title="Run command"))
    async def run_command(
        command: Annotated[str, Field(max_length=MIB, description="A bash command line.")],
        ctx: Context[Any],
        session_id: Annotated[
            str | None, Field(description="Run it in this session; omit to start a new one.")
        ] = None,
        timeout_s: Annotated[
            float | None,
            Field(gt=0, le=24 * 3600, description="Kill it after this many seconds."),
        ] = None,
        cwd: Annotated[
            str | None, Field(description="Directory to run in (default: the working directory).")
        ] = None,
    ) -> CallToolResult:
        workspace: Workspace
        caller: Caller
        workspace, caller = context(ctx)
        try:
            session = await workspace.existing_or_new(caller, session_id)
            # Cancelled when the client goes away or cancels: `run` then kills the command.
            result = await session.commands.run(command, timeout_s=timeout_s, cwd=cwd)
        except LCIError as exc:
            return error_result(exc)
        body: dict[str, Any] = {"session_id": session.id, **result.model_dump(exclude={"id"})}
        if session_id is None:
            body["new_session"] = True
        return await sized_result(session, body, [], budget_bytes=workspace.result_bytes)
