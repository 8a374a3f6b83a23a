"""MCP tool results from engine values: an Execution becomes one JSON text block (sized for a model
by shape.py) plus one image block per figure; a session, a file list or an error becomes one JSON text block; a file becomes an
embedded resource, or past a size a link to it.

The JSON is what a model reads, so it is flat and holds only what helps it continue: the session
to pass back, how the cell ended, its output, the error with its traceback, whether state survived.
"""

from __future__ import annotations

import base64
import binascii
import json
import mimetypes
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import quote

from mcp_types import (
    BlobResourceContents,
    CallToolResult,
    ContentBlock,
    EmbeddedResource,
    ImageContent,
    ResourceLink,
    TextContent,
    TextResourceContents,
)

from engine.errors import LCIError
from engine.models import DisplayOutput, Execution, FileInfo, Outcome, SessionInfo
from engine.orchestrator import chart_line

# Figures travel as image blocks; these are the image types MCP clients render.
IMAGE_TYPES = ("image/png", "image/jpeg")


def file_uri(session_id: str, path: str) -> str:
    """The resource URI of a file in a session's working directory."""
    return f"lci://sessions/{session_id}/files/{quote(path, safe='/')}"


def execution_body(execution: Execution, *, new_session: bool) -> dict[str, Any]:
    """The JSON of a cell's result. An error in the user's code is a normal result (the model must
    see it to fix its code); a time limit that fired is said in `note`, with the limit."""
    displays = [text for item in execution.displays if (text := _display_text(item)) is not None]
    error = execution.error
    note = limit_note(execution)
    return {
        "session_id": execution.session_id,
        "new_session": new_session,
        "outcome": execution.outcome.value,
        **({"note": note} if note else {}),
        "stdout": execution.stdout,
        "stderr": execution.stderr,
        "result": execution.result_text,
        "displays": displays,
        "images": len(execution_images(execution)),
        "error": None
        if error is None
        else {
            "name": error.name,
            # An interrupt at the deadline carries no message of its own.
            "value": error.value or (note and f"time limit of {execution.limits.timeout_s:g} s"),
            "traceback": error.traceback,
        },
        "truncated": execution.truncated,
        "state_preserved": execution.state_preserved,
        "duration_ms": round(execution.duration_ms, 1),
    }


def execution_images(execution: Execution) -> list[ContentBlock]:
    """One image block per figure the cell showed."""
    return [image for item in execution.displays if (image := _image(item)) is not None]


def limit_note(execution: Execution) -> str | None:
    """What a time limit did to the cell, naming the limit; None if none fired."""
    timeout = f"{execution.limits.timeout_s:g} s"
    error = execution.error
    if execution.outcome is Outcome.INTERRUPTED:
        return (
            f"Timeout: the code ran past the time limit of {timeout} (timeout_s) and was "
            "interrupted (the KeyboardInterrupt below). Variables defined before are kept. Make "
            "the code faster, or pass a larger timeout_s."
        )
    if execution.outcome is Outcome.ERROR and error is not None and error.name == "CPUTimeExceeded":
        return (
            f"Timeout: the code used up its CPU time limit of "
            f"{execution.limits.effective_cpu_s:g} s (cpu_s) and was interrupted. Variables "
            "defined before are kept. Make the code faster, or ask for a larger cpu_s."
        )
    if execution.outcome is Outcome.KILLED:
        return (
            f"Timeout: the code ran past the time limit of {timeout} (timeout_s), did not stop "
            "when interrupted and was killed. The interpreter was restarted: variables are lost, "
            "files are kept."
        )
    return None


def _display_text(item: DisplayOutput) -> str | None:
    """What the model reads of a display: its text, or for a figure (sent as an image block)
    the one-line summary of its chart, when it has one."""
    if _image(item) is not None:
        return chart_line(item.data)
    return item.data.get("text/plain")


def _image(item: DisplayOutput) -> ImageContent | None:
    for mime in IMAGE_TYPES:
        data = item.data.get(mime)
        if data is None:
            continue
        try:  # the sandbox's output is untrusted: only well-formed base64 becomes an image
            base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            return None
        return ImageContent(data=data, mime_type=mime)
    return None


def error_result(exc: LCIError) -> CallToolResult:
    """A refused call (unknown session, busy, capacity, bad path ...) as a tool error the model
    can read and act on, not a protocol error."""
    error: dict[str, Any] = {"code": exc.code, "message": exc.message}
    param = getattr(exc, "param", None)
    if param:
        error["param"] = param
    return CallToolResult(content=[_json({"error": error})], is_error=True)


def session_result(info: SessionInfo, **extra: Any) -> CallToolResult:
    return CallToolResult(content=[_json({**session_summary(info), **extra})])


def session_summary(info: SessionInfo) -> dict[str, Any]:
    return {
        "session_id": info.id,
        "state": info.state.value,
        "backend": info.backend.value,
        "limits": info.limits.model_dump(mode="json"),
        "executions": info.executions,
        "created_at": info.created_at,
        "last_used_at": info.last_used_at,
    }


def json_result(body: Any) -> CallToolResult:
    return CallToolResult(content=[_json(body)])


def files_result(files: list[FileInfo]) -> CallToolResult:
    return json_result({"files": [f.model_dump(mode="json") for f in files]})


def file_content(session_id: str, path: str, data: bytes) -> EmbeddedResource:
    """A file as an embedded resource: text when it is text, base64 otherwise."""
    uri = file_uri(session_id, path)
    mime = mimetypes.guess_type(path)[0] or "application/octet-stream"
    if mime.startswith("text/") or mime in ("application/json", "application/xml"):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            return EmbeddedResource(
                resource=TextResourceContents(uri=uri, text=text, mime_type=mime)
            )
    blob = base64.b64encode(data).decode("ascii")
    return EmbeddedResource(resource=BlobResourceContents(uri=uri, blob=blob, mime_type=mime))


def file_link(session_id: str, path: str, size: int, url: str, limit: int) -> CallToolResult:
    """A file too large to embed: a link (the session API's URL over HTTP, else the resource)."""
    name = PurePosixPath(path).name or path
    mime = mimetypes.guess_type(path)[0] or "application/octet-stream"
    note = {
        "session_id": session_id,
        "path": path,
        "size": size,
        "embedded": False,
        "reason": f"the file is larger than {limit} bytes; fetch it from the link",
        "url": url,
    }
    link = ResourceLink(uri=url, name=name, mime_type=mime, size=size)
    return CallToolResult(content=[_json(note), link])


def _json(body: Any) -> TextContent:
    return TextContent(text=json.dumps(body, ensure_ascii=False))
