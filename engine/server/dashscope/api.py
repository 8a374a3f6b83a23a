"""Surface C: the DashScope native generation API (docs/conformance/dashscope.md), as the
`dashscope` SDK calls it with `dashscope.base_http_api_url = "http://<lci>/api/v1"`.

`parameters.enable_code_interpreter` runs the tool loop. A request streams when it sends
`X-DashScope-SSE: enable`, accepts `text/event-stream`, or sets `parameters.stream`; otherwise it
gets one JSON body. Without the code interpreter the request is a plain completion of the model
server (the client's own function tools included) in the same envelope.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from engine.errors import BadParameter, UpstreamError
from engine.server.dashscope.render import DashScopeRenderer, PlainRenderer
from engine.server.http.auth import principal_of
from engine.server.http.errors import DashScopeError, error_body, status_for
from engine.server.http.openapi import LOOP_STATUSES, errors, streamed
from engine.server.http.sse import Piece, Rejection, respond, until_disconnected
from engine.server.runtime.conversation import (
    Conversation,
    LoopRequest,
    check_rules,
    collect,
    rejection,
    stream,
    upstream_params,
)
from engine.server.runtime.state import ServerState, State
from engine.server.runtime.web import search_tools

router = APIRouter(tags=["DashScope-compatible"])
DASHSCOPE_RESPONSES = {
    **streamed("A generation result, or DashScope SSE events when streaming"),
    **errors(DashScopeError, *LOOP_STATUSES),
}


MEDIA_TYPE = "text/event-stream;charset=UTF-8"


class MessagesInput(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    messages: list[dict[str, Any]] = Field(min_length=1)


class PromptInput(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    prompt: str = Field(min_length=1)


class NativeParameters(BaseModel):
    """`parameters`; sampling fields (temperature, top_p, top_k, max_tokens, seed, stop ...) are
    passed on to the model server."""

    model_config = ConfigDict(extra="allow", strict=True)

    enable_code_interpreter: bool = False
    enable_thinking: bool | None = None
    result_format: str | None = Field(
        None, description='"message" (required with the code interpreter) or "text".'
    )
    incremental_output: bool | None = Field(
        None, description="true (default): each event has only the new text; false: all so far."
    )
    stream: bool | None = None
    python_blocks: bool | None = Field(
        None, description="Run fenced ```python blocks of the model's text as code (lci's own)."
    )
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    enable_search: bool | None = Field(
        None, description="With the code interpreter: offer web_search (a provider configured)."
    )
    search_options: dict[str, Any] | None = Field(
        None, description='{"search_strategy": "agent_max"} adds web_extractor.'
    )


class NativeRequest(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    model: str | None = Field(None, description="Model name (default: the server's --llm-model).")
    input: MessagesInput | PromptInput
    parameters: NativeParameters = Field(default_factory=NativeParameters)


@router.post(
    "/api/v1/services/aigc/text-generation/generation",
    responses=DASHSCOPE_RESPONSES,
    response_model=None,
)
async def generation(body: NativeRequest, request: Request, state: State) -> Response:
    """DashScope generation; with `parameters.enable_code_interpreter` runs the loop."""
    return await generate(state, body, request)


async def generate(state: ServerState, body: NativeRequest, request: Request) -> Response:
    params = body.parameters
    streaming = _wants_stream(request, params)
    messages = _messages(body.input)
    model = body.model or state.settings.llm_model
    fields = params.model_dump(exclude_unset=True)
    incremental = params.incremental_output is not False
    if not params.enable_code_interpreter:
        return await _plain(
            state, request, messages=messages, model=model, fields=fields, streaming=streaming
        )
    check_rules(
        state.options,
        function_tools=bool(params.tools),
        thinking=params.enable_thinking,
        stream=streaming,
        thinking_param="parameters.enable_thinking",
    )
    if params.result_format not in (None, "message"):
        raise BadParameter(
            'The code interpreter requires result_format "message".', "parameters.result_format"
        )
    loop = LoopRequest(
        messages=messages,
        model=model,
        params=upstream_params(fields, state.options, params.enable_thinking),
        owner=principal_of(request.scope),
        python_blocks=params.python_blocks,
        web_tools=search_tools(
            params.enable_search,
            params.search_options,
            state.web_available,
            state.options,
            "parameters.enable_search",
        ),
    )
    conversation = Conversation(state, loop)
    renderer = DashScopeRenderer(incremental, web=bool(loop.web_tools))
    if streaming:
        return await respond(
            request, stream(conversation.events(), renderer), state.options.heartbeat_s, MEDIA_TYPE
        )
    error = await until_disconnected(request, collect(conversation.events(), renderer))
    if error is not None:
        return rejection("dashscope", error).response()
    return JSONResponse(renderer.body())


def _wants_stream(request: Request, params: NativeParameters) -> bool:
    sse = request.headers.get("x-dashscope-sse", "").lower() == "enable"
    accepts = "text/event-stream" in request.headers.get("accept", "")
    return sse or accepts or params.stream is True


def _messages(native: MessagesInput | PromptInput) -> list[dict[str, Any]]:
    if isinstance(native, MessagesInput):
        return native.messages
    return [{"role": "user", "content": native.prompt}]


async def _plain(
    state: ServerState,
    request: Request,
    *,
    messages: list[dict[str, Any]],
    model: str,
    fields: dict[str, Any],
    streaming: bool,
) -> Response:
    body = upstream_params(fields, state.options, fields.get("enable_thinking"))
    body.update({k: fields[k] for k in ("tools", "tool_choice") if fields.get(k) is not None})
    body.update(model=model, messages=messages)
    renderer = PlainRenderer(
        fields.get("incremental_output") is not False, fields.get("result_format") == "text"
    )
    pieces = _plain_pieces(state, body, renderer, streaming=streaming)
    if streaming:
        return await respond(request, pieces, state.options.heartbeat_s, MEDIA_TYPE)
    first = await until_disconnected(request, _drain(pieces))
    if isinstance(first, Rejection):
        return first.response()
    return JSONResponse(renderer.body())


async def _plain_pieces(
    state: ServerState, body: dict[str, Any], renderer: PlainRenderer, *, streaming: bool
) -> AsyncIterator[Piece]:
    started = False
    try:
        async for raw in state.proxy.chunks(body):
            for piece in renderer.chunk(raw):
                started = True
                yield piece
    except UpstreamError as exc:
        if started and streaming:  # the 200 status is sent: the error can only go in the stream
            for piece in renderer.error(exc.code, exc.message, exc.status):
                yield piece
        else:  # an unstreamed answer is not sent yet: it becomes the error status
            status = status_for(exc.code, exc.status)
            yield Rejection(status, error_body("dashscope", exc.code, exc.message, status))
        return
    for piece in renderer.final():
        yield piece


async def _drain(pieces: AsyncIterator[Piece]) -> Rejection | None:
    async for piece in pieces:
        if isinstance(piece, Rejection):
            return piece
    return None
