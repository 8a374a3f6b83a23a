"""Requests that need no tool loop go straight to the model server.

Chat Completions without `enable_code_interpreter` is forwarded as it came
(docs/conformance/chat.md, pass-through): the body unchanged but for the lci-only flag, the answer
streamed back chunk by chunk with one normalization: a `reasoning` field becomes
`reasoning_content`, the name DashScope clients read, and an integer error `code` becomes a string.
The Responses and native surfaces use `chunks` to stream a plain completion they render themselves.

This is the one server module that imports httpx; its exceptions become `UpstreamError` here.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
from fastapi.responses import JSONResponse, Response, StreamingResponse

from engine.config import Settings
from engine.errors import UpstreamError
from engine.server.http.errors import Surface, error_body, status_for
from engine.server.http.sse import DONE, SSE_HEADERS, compact_json

_LCI_ONLY = ("enable_code_interpreter", "python_blocks")  # fields no model server should see


class Proxy:
    def __init__(self, settings: Settings, read_timeout_s: float = 300.0) -> None:
        self.base_url = settings.llm_base_url.rstrip("/")
        self.default_model = settings.llm_model
        self._client = httpx.AsyncClient(
            headers={"Authorization": f"Bearer {settings.llm_api_key or 'none'}"},
            timeout=httpx.Timeout(read_timeout_s, connect=10.0),
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def forward_chat(self, body: dict[str, Any]) -> Response:
        """Forward a Chat Completions request; stream the answer back if it asked for a stream."""
        body = {k: v for k, v in body.items() if k not in _LCI_ONLY}
        body.setdefault("model", self.default_model)
        try:
            upstream = await self._open("POST", "/chat/completions", body)
        except UpstreamError as exc:
            return _chat_error(exc.message, status_for(exc.code, exc.status))
        if upstream.status_code != 200 or not body.get("stream"):
            return await _whole(upstream)
        return StreamingResponse(
            _relay(upstream), media_type="text/event-stream", headers=SSE_HEADERS
        )

    async def models(self) -> Response:
        try:
            upstream = await self._open("GET", "/models", None)
        except UpstreamError as exc:
            return _chat_error(exc.message, status_for(exc.code, exc.status), surface="responses")
        return await _whole(upstream, surface="responses")

    async def chunks(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """The decoded chunks of one streamed completion. Raises UpstreamError when the model
        server refuses the request or its stream breaks off."""
        body = {
            **body,
            "model": body.get("model") or self.default_model,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        upstream = await self._open("POST", "/chat/completions", body)
        try:
            if upstream.status_code != 200:
                await upstream.aread()
                raise UpstreamError(_upstream_message(upstream), upstream.status_code)
            async for line in upstream.aiter_lines():
                if not line.startswith("data:") or line[5:].strip() == "[DONE]":
                    continue
                chunk = json.loads(line[5:])
                if not isinstance(chunk, dict):
                    raise json.JSONDecodeError("a chunk must be a JSON object", line, 5)
                if chunk.get("error"):
                    raise UpstreamError(_error_text(chunk["error"]), _int_code(chunk["error"]))
                yield chunk
        except json.JSONDecodeError as exc:
            raise UpstreamError(f"the model server sent malformed stream data: {exc}", 502) from exc
        except httpx.HTTPError as exc:
            raise UpstreamError(f"the model server's stream broke off: {exc}", 502) from exc
        finally:
            with anyio.CancelScope(shield=True):
                await upstream.aclose()

    async def _open(self, method: str, path: str, body: dict[str, Any] | None) -> httpx.Response:
        request = self._client.build_request(method, self.base_url + path, json=body)
        try:
            return await self._client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise UpstreamError(f"cannot reach the model server at {self.base_url}: {exc}") from exc


async def _whole(upstream: httpx.Response, surface: Surface = "chat") -> Response:
    try:
        data = await upstream.aread()
    except httpx.HTTPError as exc:
        return _chat_error(f"the model server's answer broke off: {exc}", 502, surface)
    finally:
        await upstream.aclose()
    try:
        payload = json.loads(data)
    except json.JSONDecodeError:
        payload = None
    if upstream.status_code != 200:
        status = status_for("upstream_error", upstream.status_code)
        return _chat_error(_upstream_message(upstream), status, surface)
    if not isinstance(payload, dict):
        text = data[:200].decode(errors="replace")
        return _chat_error(f"the model server sent a malformed answer: {text}", 502, surface)
    for choice in payload.get("choices") or ():
        if isinstance(choice, dict) and isinstance(choice.get("message"), dict):
            _rename_reasoning(choice["message"])
    return JSONResponse(payload)


async def _relay(upstream: httpx.Response) -> AsyncIterator[str]:
    try:
        async for line in upstream.aiter_lines():
            if line.startswith("data:") and line[5:].strip() != "[DONE]":
                yield f"data: {_normalize(line[5:])}\n\n"
            elif line.startswith(":"):
                yield line + "\n\n"
    except (httpx.HTTPError, json.JSONDecodeError) as exc:
        what = "sent malformed stream data" if isinstance(exc, ValueError) else "stream broke off"
        body = error_body("chat", "upstream_error", f"the model server's {what}: {exc}", 502)
        yield f"data: {json.dumps(body)}\n\n{DONE}"
        return
    finally:
        with anyio.CancelScope(shield=True):
            await upstream.aclose()
    yield DONE


def _normalize(data: str) -> str:
    """The chunk with the normalizations of the module docstring. Raises JSONDecodeError when it
    is not a JSON object: a client would choke on it."""
    chunk = json.loads(data)
    if not isinstance(chunk, dict):
        raise json.JSONDecodeError("a chunk must be a JSON object", data, 0)
    for choice in chunk.get("choices") or ():
        if isinstance(choice, dict) and isinstance(choice.get("delta"), dict):
            _rename_reasoning(choice["delta"])
    error = chunk.get("error")
    if isinstance(error, dict) and isinstance(error.get("code"), int):
        error["code"] = str(error["code"])
    return compact_json(chunk)


def _rename_reasoning(message: dict[str, Any]) -> None:
    reasoning = message.pop("reasoning", None)
    if reasoning and not message.get("reasoning_content"):
        message["reasoning_content"] = reasoning


def _chat_error(message: str, status: int, surface: Surface = "chat") -> JSONResponse:
    return JSONResponse(error_body(surface, "upstream_error", message, status), status)


def _upstream_message(upstream: httpx.Response) -> str:
    text = ""
    with contextlib.suppress(httpx.ResponseNotRead, UnicodeDecodeError):
        text = upstream.text
    with contextlib.suppress(json.JSONDecodeError):
        payload = json.loads(text)
        if isinstance(payload, dict):
            text = _error_text(payload.get("error", payload))
    return f"the model server answered HTTP {upstream.status_code}: {text[:500]}"


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error)


def _int_code(error: Any) -> int | None:
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, int) and 400 <= code < 600 else None
