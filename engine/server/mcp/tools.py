"""The MCP server: lci's sessions as tools (run Python, manage sessions, move files) and the files of
a session as resources. The same server object serves stdio (`lci mcp`) and streamable HTTP
(`/mcp` of `lci serve`); the transport only decides who the caller is.

Descriptions are written for the model that calls the tools: what persists between calls, what the
limits are, how figures come back.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Annotated, Any, Literal
from urllib.parse import quote

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError
from mcp_types import CallToolResult, ToolAnnotations
from pydantic import Field

from engine.core.session import Session
from engine.errors import BadParameter, LCIError, NotFound
from engine.models import MIB, Limits
from engine.server.mcp.render import (
    error_result,
    execution_body,
    execution_images,
    file_content,
    file_link,
    file_uri,
    files_result,
    json_result,
    session_result,
    session_summary,
)
from engine.server.mcp.shape import sized_result
from engine.server.mcp.shell import add_command_tools
from engine.server.mcp.snapshots import add_snapshot_tools
from engine.server.mcp.workspace import Caller, Workspace, WorkspaceRef, caller_from_request

INSTRUCTIONS = """\
lci runs Python in persistent, sandboxed sessions. Call run_python without a session_id to start a
session; pass the returned session_id back to keep variables, imports and files. Figures
(matplotlib) come back as images. run_command runs a shell command in the same sandbox. Each
session has a working directory for files (upload_file, list_files, download_file).
snapshot_session saves a session's whole state and restore_snapshot goes back to it (an undo);
fork_session copies a session to try several approaches side by side. Close sessions you no longer
need."""

RUN_PYTHON = """\
Run Python code in a sandboxed, stateful interpreter (like a Jupyter cell) and return what it did.

State: omit session_id to start a new session; the result's session_id is that session. Pass it
back to continue: variables, imports, functions and files in the working directory persist between
calls until the session is closed or idle for long. numpy, pandas and matplotlib are usually
available; there is no network access unless the session was created with network=true.

Result: a JSON object with session_id, outcome (completed | error | interrupted | killed |
crashed), stdout, stderr, result (the text of the last expression's value, as in a notebook),
error (name, value, traceback) when the code raised, truncated (output was cut to the limit),
state_preserved (false after killed/crashed: the interpreter was restarted and variables are gone,
files are kept), note (present when a time limit fired or the output was cut). The text is at most
16,000 bytes: a longer output keeps the start and end of each field, and the whole of it is saved
in the file .lci/output.txt of the session's working directory (full_output names it), to read
with run_python. Each matplotlib figure shown (plt.show() or a figure left open at the end) comes
back as an image block after the JSON.

Limits: each call has a wall-clock timeout (default 30 s, or timeout_s): at the deadline the code
gets KeyboardInterrupt (state kept) and note says which limit fired; if it does not stop it is
killed (state lost). Memory, disk,
processes and output size are limited too. An error in the code is a normal result to read and fix,
not a failure of the tool. One call at a time per session."""

CREATE_SESSION = """\
Start a new sandboxed Python session and return its session_id (use it with run_python and the
file tools). Use this instead of run_python without a session_id when the session needs different
limits or network access. limits may set: timeout_s (wall time per run_python call), cpu_s,
memory_mb, max_procs, disk_mb, open_files, output_bytes, cpus; fields left out keep the server's
defaults. network=true allows network access from the sandbox (default: off)."""

CLOSE_SESSION = """\
Close a session: its interpreter is stopped (a running call is interrupted) and its variables and
working directory are discarded. Download files you need first."""

LIST_SESSIONS = """\
List your live sessions: session_id, state (idle | busy | broken), limits, number of executions,
creation and last-use times (Unix seconds)."""

LIST_FILES = """\
List the files in a session's working directory (the current directory of the code run there):
path (relative), size in bytes, modification time."""

UPLOAD_FILE = """\
Write a file into a session's working directory, where the session's code can open it by its
relative path. content is the file's text (encoding="text", written as UTF-8) or its bytes in
base64 (encoding="base64"). Parent directories are created; an existing file is replaced."""

DOWNLOAD_FILE = """\
Return a file from a session's working directory as an embedded resource (text for text files,
base64 otherwise), e.g. a CSV or a PNG the code saved. A file larger than the inline limit comes
back as a link instead (the session HTTP API's URL over HTTP, else the lci:// resource URI)."""

SessionId = Annotated[
    str, Field(description="A session_id returned by run_python or create_session.")
]
FilePath = Annotated[
    str, Field(description="Path relative to the working directory, e.g. 'data/input.csv'.")
]


def build_mcp_server(ref: WorkspaceRef, *, version: str = "") -> MCPServer[Any]:
    """The MCP server over the workspace `ref` will hold once the transport has started."""
    server: MCPServer[Any] = MCPServer(
        name="lci", instructions=INSTRUCTIONS, version=version, log_level="WARNING"
    )

    def context(ctx: Context[Any]) -> tuple[Workspace, Caller]:
        workspace = ref.get()
        request = ctx.request_context.request
        return workspace, caller_from_request(request, auth=workspace.auth)

    _add_session_tools(server, context)
    add_command_tools(server, context)
    add_snapshot_tools(server, context)
    _add_file_tools(server, context)
    return server


CallerOf = Callable[[Context[Any]], tuple[Workspace, Caller]]


def _add_session_tools(server: MCPServer[Any], context: CallerOf) -> None:
    @server.tool(
        description=RUN_PYTHON,
        annotations=ToolAnnotations(title="Run Python"),
    )
    async def run_python(
        code: Annotated[str, Field(max_length=4 * MIB, description="Python source to run.")],
        ctx: Context[Any],
        session_id: Annotated[
            str | None,
            Field(description="Continue this session; omit to start a new one."),
        ] = None,
        timeout_s: Annotated[
            float | None,
            Field(gt=0, le=24 * 3600, description="Wall-clock limit of this call in seconds."),
        ] = None,
    ) -> CallToolResult:
        workspace, caller = context(ctx)
        try:
            session = await workspace.existing_or_new(caller, session_id)
            # Cancelled when the client goes away or cancels: the session then stops the cell.
            execution = await session.execute(code, timeout_s=timeout_s)
        except LCIError as exc:
            return error_result(exc)
        body = execution_body(execution, new_session=session_id is None)
        return await sized_result(
            session, body, execution_images(execution), budget_bytes=workspace.result_bytes
        )

    @server.tool(description=CREATE_SESSION, annotations=ToolAnnotations(title="Create session"))
    async def create_session(
        ctx: Context[Any],
        limits: Annotated[
            Limits | None, Field(description="Limits to change from the server's defaults.")
        ] = None,
        network: Annotated[
            bool | None, Field(description="Allow network access from the sandbox.")
        ] = None,
    ) -> CallToolResult:
        workspace, caller = context(ctx)
        changes = {} if limits is None else limits.model_dump(include=limits.model_fields_set)
        if network is not None:
            changes["network"] = network
        try:
            session = await workspace.create(caller, changes)
        except LCIError as exc:
            return error_result(exc)
        return session_result(session.info())

    @server.tool(
        description=CLOSE_SESSION,
        annotations=ToolAnnotations(title="Close session", destructive_hint=True),
    )
    async def close_session(session_id: SessionId, ctx: Context[Any]) -> CallToolResult:
        workspace, caller = context(ctx)
        try:
            await workspace.close(caller, session_id)
        except LCIError as exc:
            return error_result(exc)
        return json_result({"session_id": session_id, "closed": True})

    @server.tool(
        description=LIST_SESSIONS,
        annotations=ToolAnnotations(title="List sessions", read_only_hint=True),
    )
    async def list_sessions(ctx: Context[Any]) -> CallToolResult:
        workspace, caller = context(ctx)
        return json_result(
            {"sessions": [session_summary(s.info()) for s in workspace.sessions(caller)]}
        )


def _add_file_tools(server: MCPServer[Any], context: CallerOf) -> None:
    @server.tool(
        description=LIST_FILES, annotations=ToolAnnotations(title="List files", read_only_hint=True)
    )
    async def list_files(session_id: SessionId, ctx: Context[Any]) -> CallToolResult:
        workspace, caller = context(ctx)
        try:
            return files_result(await workspace.get(caller, session_id).list_files())
        except LCIError as exc:
            return error_result(exc)

    @server.tool(description=UPLOAD_FILE, annotations=ToolAnnotations(title="Upload file"))
    async def upload_file(
        session_id: SessionId,
        path: FilePath,
        content: Annotated[str, Field(description="The file's text, or its bytes in base64.")],
        ctx: Context[Any],
        encoding: Annotated[
            Literal["text", "base64"], Field(description="How content is given.")
        ] = "text",
    ) -> CallToolResult:
        workspace, caller = context(ctx)
        try:
            session = workspace.get(caller, session_id)
            data = _decode(content, encoding)
            await session.write_file(path, data)
        except LCIError as exc:
            return error_result(exc)
        return json_result({"session_id": session_id, "path": path, "size": len(data)})

    @server.tool(
        description=DOWNLOAD_FILE,
        annotations=ToolAnnotations(title="Download file", read_only_hint=True),
    )
    async def download_file(
        session_id: SessionId, path: FilePath, ctx: Context[Any]
    ) -> CallToolResult:
        workspace, caller = context(ctx)
        try:
            session = workspace.get(caller, session_id)
            size = await _size(session, path)
            if size is not None and size > workspace.inline_bytes:
                url = file_uri(session_id, path)
                if caller.api_base is not None:
                    url = f"{caller.api_base}/v1/sessions/{session_id}/files/{_quote(path)}"
                return file_link(session_id, path, size, url, workspace.inline_bytes)
            data = await session.read_file(path, max_bytes=workspace.inline_bytes)
        except LCIError as exc:
            return error_result(exc)
        return CallToolResult(content=[file_content(session_id, path, data)])

    @server.resource(
        "lci://sessions/{session_id}/files/{+path}",
        name="session-file",
        description="A file in the working directory of one of your sessions.",
        mime_type="application/octet-stream",
    )
    async def session_file(session_id: str, path: str, ctx: Context[Any]) -> bytes:
        workspace, caller = context(ctx)
        try:
            return await workspace.get(caller, session_id).read_file(path)
        except NotFound as exc:
            # The spec's "resource not found" (-32602 since SEP-2164), not an internal error.
            raise ResourceNotFoundError(exc.message) from exc
        except LCIError as exc:
            raise ResourceError(exc.message) from exc


def _decode(content: str, encoding: str) -> bytes:
    if encoding == "text":
        return content.encode("utf-8", errors="surrogatepass")
    try:
        return base64.b64decode(content, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadParameter("content is not valid base64", "content") from exc


async def _size(session: Session, path: str) -> int | None:
    """The file's size from the directory listing, so a large file is linked without reading it."""
    normalized = path.strip("/")
    for info in await session.list_files():
        if info.path == normalized:
            return info.size
    return None


def _quote(path: str) -> str:
    return quote(path.strip("/"), safe="/")
