"""What the three compatible surfaces share: the request rules (docs/conformance/common.md,
request rules), the upstream parameters a client may set, one run of the tool loop for a request,
and driving a surface's renderer over the loop's events (streamed, or collected into one answer)."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import anyio

from engine.errors import BadParameter, LCIError, UpstreamError
from engine.orchestrator import (
    ErrorEvent,
    Event,
    Final,
    LoopOptions,
    ReasoningDelta,
    RoundStart,
    TextDelta,
    Usage,
    UsageEvent,
    normalize,
)
from engine.server.http.errors import Surface, error_body, status_for
from engine.server.http.sse import Piece, Rejection
from engine.server.runtime.options import ServerOptions
from engine.server.runtime.state import ServerState

log = logging.getLogger(__name__)

MUTUALLY_EXCLUSIVE = (
    "enable_code_interpreter cannot be used together with tools (function calling)."
)
_OFF = {
    "enable_thinking": "enable_thinking must not be false",
    "reasoning.effort": 'reasoning.effort must not be "none"',
    "parameters.enable_thinking": "enable_thinking must not be false",
}
PYTHON_BLOCKS_FIELD = "python_blocks"  # lci's own request field (chat, responses, native)
STREAM_ONLY = (
    "This model only support stream mode, please enable the stream parameter to access the model."
)

# Sampling and template fields a client may pass on to the model server.
FORWARDED_PARAMS = (
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "max_tokens",
    "max_completion_tokens",
    "seed",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "repetition_penalty",
    "thinking_budget",
    "chat_template_kwargs",
)


def check_rules(
    options: ServerOptions,
    *,
    function_tools: bool,
    thinking: bool | None,
    stream: bool,
    thinking_param: str = "enable_thinking",
) -> None:
    """Raise BadParameter when a code-interpreter request breaks one of the request rules.
    Thinking switched off is refused only with `require_thinking` (the hosted service's rule);
    `thinking_param` names the field the client used to switch it off."""
    if function_tools:
        raise BadParameter(MUTUALLY_EXCLUSIVE, "tools")
    if thinking is False and options.require_thinking and not options.force_thinking:
        off = _OFF.get(thinking_param, _OFF["enable_thinking"])
        raise BadParameter(f"The code interpreter requires thinking mode: {off}.", thinking_param)
    if not stream and not options.allow_non_stream:
        raise BadParameter(STREAM_ONLY, "stream")


def upstream_params(
    source: dict[str, Any], options: ServerOptions, thinking: bool | None
) -> dict[str, Any]:
    """The client's sampling fields, and its thinking switch in the form the model server reads."""
    params = {k: source[k] for k in FORWARDED_PARAMS if source.get(k) is not None}
    if thinking is False and options.force_thinking:
        thinking = True
    if thinking is None or options.thinking_switch == "none":
        return params
    if options.thinking_switch == "enable_thinking":
        params["enable_thinking"] = thinking
    else:
        kwargs = params.get("chat_template_kwargs")
        params["chat_template_kwargs"] = {
            **(kwargs if isinstance(kwargs, dict) else {}),
            "enable_thinking": thinking,
        }
    return params


@dataclass
class LoopRequest:
    messages: list[dict[str, Any]]
    model: str
    params: dict[str, Any] = field(default_factory=dict)
    keep_session: bool = False  # Responses containers outlive the request
    container: str | None = None  # run in this existing session
    max_rounds: int | None = None
    owner: str = ""  # the principal (API key) whose sessions the conversation may use and starts
    tool_choice: Literal["auto", "required"] = "auto"
    python_blocks: bool | None = None  # the request's own choice; None: the server's option
    keep_for_s: float | None = None  # a kept session is closed this long after the request
    web_tools: list[str] = field(default_factory=list)  # web_search, web_extractor
    code_interpreter: bool = True  # offer the code interpreter (False: only the other tools)
    shell: bool = False  # offer the shell tool, in the same session as the code


def python_blocks(value: Any, param: str = PYTHON_BLOCKS_FIELD) -> bool | None:
    """A request's `python_blocks` field: true, false, or absent (the server decides)."""
    if value is None or isinstance(value, bool):
        return value
    raise BadParameter(f"{param} must be true or false", param)


class Conversation:
    """One request's run of the tool loop, in a session of its own (or the container it named)."""

    def __init__(self, state: ServerState, request: LoopRequest) -> None:
        self.state = state
        self.request = request
        self.id = uuid.uuid4().hex

    async def events(self) -> AsyncGenerator[Event, None]:
        options = self.state.options
        blocks = self.request.python_blocks
        loop_options = LoopOptions(
            model=self.request.model,
            max_rounds=min(self.request.max_rounds or options.max_rounds, options.max_rounds),
            on_max_rounds=options.on_max_rounds,
            deadline_s=options.deadline_s,
            params=self.request.params,
            tool_choice=self.request.tool_choice,
            python_blocks=options.python_blocks if blocks is None else blocks,
            web_tools=self.request.web_tools,
            code_interpreter=self.request.code_interpreter,
            shell=self.request.shell,
        )
        try:
            self.state.runner.assign(self.id, self.request.owner)
            if self.request.container is not None:  # SessionNotFound comes before any output
                self.state.runner.bind(self.id, self.request.container, self.request.owner)
            async for event in self.state.orchestrator.run(
                self.request.messages, conversation_id=self.id, options=loop_options
            ):
                yield event
        finally:
            with anyio.CancelScope(shield=True):
                await self.state.runner.release(
                    self.id, close=not self.request.keep_session, keep_for_s=self.request.keep_for_s
                )

    async def container_id(self) -> str:
        """The session the conversation's code runs in, started now if needed."""
        return (await self.state.runner.session(self.id)).id


async def plain_events(state: ServerState, request: LoopRequest) -> AsyncGenerator[Event, None]:
    """One completion without tools, as loop events (for surfaces asked for no code interpreter)."""
    yield RoundStart(round=1)
    text: list[str] = []
    usage, finish = Usage(), "stop"
    body = {**request.params, "model": request.model, "messages": request.messages}
    try:
        async for raw in state.proxy.chunks(body):
            chunk = normalize(raw)
            usage = chunk.usage or usage
            finish = "length" if chunk.finish_reason == "length" else finish
            if chunk.reasoning:
                yield ReasoningDelta(round=1, text=chunk.reasoning)
            if chunk.text:
                text.append(chunk.text)
                yield TextDelta(round=1, text=chunk.text)
    except UpstreamError as exc:
        yield ErrorEvent(
            code=exc.code,
            message=exc.message,
            status=exc.status,
            rounds=1,
            executions=0,
            usage=usage,
        )
        return
    yield UsageEvent(round=1, usage=usage, total=usage)
    yield Final(
        text="".join(text),
        finish_reason="length" if finish == "length" else "stop",
        rounds=1,
        executions=0,
        usage=usage,
    )


class Renderer(Protocol):
    surface: Surface

    def start(self) -> list[str]:
        """What a stream opens with, once it is known the request did not fail outright."""
        ...

    async def feed(self, event: Event) -> list[str]:
        """The wire pieces one loop event becomes (possibly none)."""
        ...


def failure(code: str, message: str) -> ErrorEvent:
    return ErrorEvent(code=code, message=message, rounds=0, executions=0, usage=Usage())


def rejection(surface: Surface, event: ErrorEvent) -> Rejection:
    status = status_for(event.code, event.status)
    return Rejection(status, error_body(surface, event.code, event.message, status))


async def stream(events: AsyncGenerator[Event, None], renderer: Renderer) -> AsyncIterator[Piece]:
    """The renderer's pieces for the loop's events. An error before the first output is a
    Rejection (an HTTP error status); after it, the renderer reports it inside the stream."""
    started = False
    try:
        async with contextlib.aclosing(events):
            async for event in events:
                if not started:
                    if isinstance(event, RoundStart):
                        continue
                    if isinstance(event, ErrorEvent):
                        yield rejection(renderer.surface, event)
                        return
                    started = True
                    for piece in renderer.start():
                        yield piece
                for piece in await renderer.feed(event):
                    yield piece
    except LCIError as exc:
        terminal = failure(exc.code, exc.message)
    except Exception:
        log.exception("rendering a %s stream failed", renderer.surface)
        terminal = failure("internal_error", "internal server error")
    else:
        return
    if not started:
        yield rejection(renderer.surface, terminal)
        return
    for piece in await renderer.feed(terminal):
        yield piece


async def collect(events: AsyncGenerator[Event, None], renderer: Renderer) -> ErrorEvent | None:
    """Feed every event to the renderer (for an unstreamed answer); the error that ended the loop,
    if one did."""
    try:
        async with contextlib.aclosing(events):
            async for event in events:
                await renderer.feed(event)
                if isinstance(event, ErrorEvent):
                    return event
    except LCIError as exc:
        return failure(exc.code, exc.message)
    except Exception:  # a bug must not take the connection down with an unhandled exception
        log.exception("collecting a %s answer failed", renderer.surface)
        return failure("internal_error", "internal server error")
    return None
