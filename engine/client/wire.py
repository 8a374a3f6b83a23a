"""What the sync and async clients share: request bodies, the error mapping and the SSE reader."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import TypeAdapter

from engine import errors
from engine.command_models import CommandResult
from engine.models import Execution, FileEvent, OutputItem

ITEMS: TypeAdapter[OutputItem] = TypeAdapter(OutputItem)
ITEM_EVENTS = {"stdout", "stderr", "display", "result", "truncated"}
DEFAULT_URL = "http://127.0.0.1:8000"


def error_from(status: int, body: bytes) -> errors.LCIError:
    """The server's `{"error": {"code", "message", "param"}}` as the matching exception."""
    try:
        detail = json.loads(body)["error"]
        code, message, param = detail["code"], detail["message"], detail.get("param")
    except (ValueError, KeyError, TypeError):
        text = body.decode(errors="replace")[:200]
        return errors.LCIError(f"HTTP {status}: {text}")
    return errors.from_code(code, message, param=param, status=status)


@contextlib.contextmanager
def translated(client: httpx.AsyncClient | httpx.Client) -> Iterator[None]:
    """httpx's transport failures (no server listening, a connection dropped mid-answer, a
    timeout) as `ServerUnavailable`, chained."""
    try:
        yield
    except httpx.TransportError as exc:
        reason = str(exc) or type(exc).__name__
        raise errors.ServerUnavailable(f"lci server {client.base_url}: {reason}") from exc


def check(response: httpx.Response) -> httpx.Response:
    if response.status_code >= 400:
        raise error_from(response.status_code, response.content)
    return response


def headers(api_key: str | None) -> dict[str, str]:
    key = api_key if api_key is not None else os.environ.get("LCI_API_KEY")
    return {"Authorization": f"Bearer {key}"} if key else {}


def session_body(
    limits: Mapping[str, Any] | None,
    backend: str | None,
    env: Mapping[str, str] | None,
    image: str | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"env": dict(env or {})}
    if limits:
        body["limits"] = dict(limits)
    if backend:
        body["backend"] = backend
    if image:
        body["image"] = image
    return body


def execute_body(code: str, timeout_s: float | None, wait: bool, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "wait": wait, "stream": stream}
    if timeout_s is not None:
        body["timeout_s"] = timeout_s
    return body


@dataclass
class SSELines:
    """Server-sent events from their lines: `feed` returns (event, data) once an event is whole."""

    _event: str = ""
    _data: list[str] = field(default_factory=list)

    def feed(self, line: str) -> tuple[str, str] | None:
        if line.startswith(":"):
            return None  # a comment: the start marker or a keep-alive
        if line.startswith("event:"):
            self._event = line[6:].strip()
        elif line.startswith("data:"):
            self._data.append(line[5:].lstrip())
        elif not line and self._event:
            event, data = self._event, "\n".join(self._data)
            self._event, self._data = "", []
            return event, data
        return None


@dataclass
class SSEReader:
    """Turns the lines of the execute stream into output items and, at the end, the Execution."""

    execution: Execution | None = None
    _lines: SSELines = field(default_factory=SSELines)

    def line(self, line: str) -> Iterator[OutputItem]:
        whole = self._lines.feed(line)
        if whole is None:
            return
        event, data = whole
        if event in ITEM_EVENTS:
            yield ITEMS.validate_json(data)
        elif event == "execution":
            self.execution = Execution.model_validate_json(data)
        elif event == "error":
            raise error_from(500, data.encode())

    def result(self) -> Execution:
        if self.execution is None:
            raise errors.ProtocolError("the execute stream ended without its execution")
        return self.execution


@dataclass
class CommandStreamReader:
    """Turns the lines of a command's stream into (stream name, text) pairs and, at the end, its
    CommandResult."""

    outcome: CommandResult | None = None
    _lines: SSELines = field(default_factory=SSELines)

    def line(self, line: str) -> Iterator[tuple[str, str]]:
        whole = self._lines.feed(line)
        if whole is None:
            return
        event, data = whole
        if event in ("stdout", "stderr", "pty"):
            yield event, json.loads(data)["data"]
        elif event == "result":
            self.outcome = CommandResult.model_validate_json(data)
        elif event == "error":
            raise error_from(500, data.encode())

    def result(self) -> CommandResult:
        if self.outcome is None:
            raise errors.ProtocolError("the command's stream ended without its result")
        return self.outcome


def file_url(path: str) -> str:
    """A workdir path as the tail of a download URL: relative or absolute (`/workspace/x`, which
    keeps its leading slash), with any other character quoted."""
    return quote(path, safe="/")


@dataclass
class WatchReader:
    """The lines of a tree watch's SSE stream, fed in order: each change as a FileEvent; the
    `ready` event passes silently; an `error` event raises it as the engine's exception."""

    _lines: SSELines = field(default_factory=SSELines)

    def line(self, line: str) -> FileEvent | None:
        whole = self._lines.feed(line)
        if whole is None:
            return None
        name, data = whole
        if name == "error":
            raise error_from(500, data.encode())
        if name == "ready":
            return None
        return FileEvent.model_validate_json(data)
