"""The client for the upstream model server: OpenAI-compatible Chat Completions, streamed.

This is the one module that imports `openai`; its exceptions are translated to `UpstreamError` here.
The SDK sends the request, retries it, decodes the SSE stream and raises on error events inside it;
chunks stay plain dicts, so vendor fields are never lost. Every server's stream is normalized to
`Chunk`s (docs/conformance/upstream.md, reading the stream): reasoning from `reasoning_content` or
`reasoning` (vLLM intermediate releases send both with the same text, so only one is taken), text,
tool-call fragments by index, finish reason, and usage wherever it comes.

Retries: the request itself is retried by the SDK (`max_retries`, exponential backoff; 408/409/429/
5xx and connection errors; a 429's Retry-After is honoured up to two minutes). A stream that breaks
off after it began is not retried here: that raises `StreamInterrupted`, and the loop decides,
because only it knows whether anything of the round was already shown.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import openai

from engine.config import Settings
from engine.errors import UpstreamError
from engine.orchestrator.events import Usage

REASONING_FIELDS = ("reasoning_content", "reasoning")


@dataclass
class RoundRequest:
    """One backend call. `params` are extra top-level request fields (temperature, max_tokens,
    chat_template_kwargs, ...), sent as they are. Without `tools`, neither tools nor tool_choice
    is sent."""

    model: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    tool_choice: Literal["auto", "none", "required"] = "auto"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class Fragment:
    index: int | None
    id: str | None
    name: str | None
    arguments: str | None


@dataclass
class Chunk:
    """One streamed chunk, normalized."""

    reasoning: str = ""
    reasoning_field: str | None = None
    text: str = ""
    tool_calls: list[Fragment] = field(default_factory=list)
    finish_reason: str | None = None
    usage: Usage | None = None


class StreamInterrupted(Exception):
    """The stream of a round broke off after it had begun (a dropped connection, an error event in
    the stream, or an end without a finish reason)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Upstream(Protocol):
    def stream(self, request: RoundRequest) -> AsyncGenerator[Chunk, None]:
        """The chunks of one round. Raises UpstreamError when the request fails, StreamInterrupted
        when the stream breaks off before the round's finish reason."""
        ...


class UpstreamClient:
    """Streams rounds from an OpenAI-compatible server. Close it (or use `async with`)."""

    def __init__(
        self,
        base_url: str,
        api_key: str = "none",
        *,
        max_retries: int = 2,
        connect_timeout_s: float = 10.0,
        read_timeout_s: float = 300.0,
        http_client: Any = None,
    ) -> None:
        """`http_client`: an `openai.DefaultAsyncHttpxClient` to use instead of the SDK's own
        (for a proxy, custom TLS, or an in-memory transport)."""
        self.base_url = base_url
        # The read timeout bounds the gap between two chunks: a CPU-bound server may think for a
        # long time before its first token, so it is generous; the loop's deadline bounds the rest.
        self._client = openai.AsyncOpenAI(
            base_url=base_url,
            api_key=api_key or "none",
            max_retries=max_retries,
            timeout=openai.Timeout(read_timeout_s, connect=connect_timeout_s),
            http_client=http_client,
        )

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> UpstreamClient:
        kwargs.setdefault("read_timeout_s", settings.llm_read_timeout_s)
        return cls(settings.llm_base_url, settings.llm_api_key, **kwargs)

    async def __aenter__(self) -> UpstreamClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.close()

    async def stream(self, request: RoundRequest) -> AsyncGenerator[Chunk, None]:
        stream = await self._open(request)
        finished = False
        async with stream:
            try:
                async for raw in stream:
                    chunk = normalize(raw)
                    finished = finished or chunk.finish_reason is not None
                    yield chunk
            except openai.APIError as exc:
                if not finished:  # a failure after the finish reason costs at most the usage
                    raise StreamInterrupted(_describe(exc), _status(exc)) from exc
            except (ValueError, TypeError, AttributeError, KeyError) as exc:
                # Data that is not JSON (the SDK's decoder raises JSONDecodeError) or not shaped
                # like a chunk: the server is broken, and asking again would not mend it.
                raise UpstreamError(
                    f"the model server sent malformed stream data: {exc}", 502
                ) from exc
        if not finished:
            raise StreamInterrupted("the stream ended before the model finished its reply")

    async def _open(self, request: RoundRequest) -> openai.AsyncStream[object]:
        # The generic `post` with plain dicts, not `chat.completions.create`: the typed path
        # transforms every message on the way out and builds a pydantic model per chunk on the way
        # in, which costs more than everything else the loop does (benchmarks/
        # orchestrator_overhead.py); retries, errors and SSE decoding are the same code either way.
        body: dict[str, Any] = {
            **request.params,
            "model": request.model,
            "messages": request.messages,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.tools:
            body.update(tools=request.tools, tool_choice=request.tool_choice)
        try:
            return await self._client.post(
                "/chat/completions",
                body=body,
                cast_to=object,
                stream=True,
                # `object`: the SDK hands each decoded JSON chunk over as it is.
                stream_cls=openai.AsyncStream[object],
            )
        except openai.APIConnectionError as exc:
            raise UpstreamError(
                f"cannot reach the model server at {self.base_url}: {_describe(exc)}"
            ) from exc
        except openai.APIError as exc:
            raise UpstreamError(
                f"the model server refused the request: {_describe(exc)}", _status(exc)
            ) from exc


def normalize(chunk: object) -> Chunk:
    """The parts of one `chat.completion.chunk` that the loop uses; unknown fields are ignored."""
    if not isinstance(chunk, dict):
        return Chunk()
    usage = chunk.get("usage")
    out = Chunk(usage=_usage(usage) if isinstance(usage, dict) else None)
    choices = chunk.get("choices")
    for choice in choices if isinstance(choices, list) else ():
        if not isinstance(choice, dict) or choice.get("index", 0) != 0:  # n > 1: never asked
            continue
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            delta = {}
        out.text = _str(delta.get("content"))
        for name in REASONING_FIELDS:  # vLLM releases that send both send the same text twice
            if value := _str(delta.get(name)):
                out.reasoning, out.reasoning_field = value, name
                break
        calls = delta.get("tool_calls")
        for call in calls if isinstance(calls, list) else ():
            if not isinstance(call, dict):
                continue
            function = call.get("function")
            if not isinstance(function, dict):
                function = {}
            out.tool_calls.append(
                Fragment(
                    index=call["index"] if isinstance(call.get("index"), int) else None,
                    id=_str(call.get("id")) or None,
                    name=_str(function.get("name")) or None,
                    arguments=_str(function.get("arguments")) or None,
                )
            )
        out.finish_reason = _str(choice.get("finish_reason")) or None
    return out


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _usage(usage: dict[str, Any]) -> Usage:
    completion = _dict(usage.get("completion_tokens_details"))
    prompt = _dict(usage.get("prompt_tokens_details"))
    return Usage(
        input_tokens=_int(usage.get("prompt_tokens")),
        output_tokens=_int(usage.get("completion_tokens")),
        reasoning_tokens=_int(completion.get("reasoning_tokens")),
        cached_tokens=_int(prompt.get("cached_tokens")),
    )


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _status(exc: openai.APIError) -> int | None:
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code
    code = exc.body.get("code") if isinstance(exc.body, dict) else None
    return code if isinstance(code, int) and 400 <= code < 600 else None


def _describe(exc: openai.APIError) -> str:
    message = exc.message
    if isinstance(exc, openai.APIStatusError):
        retry_after = exc.response.headers.get("retry-after")
        if retry_after:
            message += f" (retry after {retry_after} s)"
    elif isinstance(exc, openai.APIConnectionError) and exc.__cause__ is not None:
        message += f" ({exc.__cause__})"
    return message
