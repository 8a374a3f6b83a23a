"""Surface A: the OpenAI-compatible Responses API (docs/conformance/responses.md).

`tools: [{"type": "code_interpreter"}]` runs the tool loop; output items are `reasoning`,
`code_interpreter_call` and `message`. `{"type": "shell"}` offers OpenAI's hosted shell beside it
(or alone): `shell_call` and `shell_call_output` items, its commands run in the same container. The call's `container_id` is the lci session the code ran in:
passing it back as the tool's `container` continues in that session, with its variables and files
(it is also a session of the `/v1/sessions` API, so its files can be downloaded there). Responses
are kept for `previous_response_id`, which continues the conversation and its container. A
`{"type": "auto", "file_ids", "memory_limit"}` container is made before the loop starts
(`container`), and files the code wrote are cited on the answer (citations).
Without the code interpreter the request is a plain completion rendered as a response.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from engine.errors import BadParameter, ContainerNotFound, ResponseNotFound, SessionNotFound
from engine.server.http.auth import principal_of
from engine.server.http.errors import OpenAIError
from engine.server.http.openapi import LOOP_STATUSES, errors, streamed
from engine.server.http.sse import respond, until_disconnected
from engine.server.openai.containers.registry import ContainerRegistry
from engine.server.openai.responses import container as responses_container
from engine.server.openai.responses.citations import CallFiles
from engine.server.openai.responses.input import (
    InputItem,
    input_messages,
    output_messages,
    read_tools,
)
from engine.server.openai.responses.items import new_id
from engine.server.openai.responses.render import ResponseContext, ResponsesRenderer
from engine.server.openai.responses.store import ResponseStore, Stored
from engine.server.runtime.conversation import (
    Conversation,
    LoopRequest,
    check_rules,
    collect,
    plain_events,
    rejection,
    stream,
    upstream_params,
)
from engine.server.runtime.state import ServerState, State

router = APIRouter(tags=["OpenAI-compatible"])
RESPONSES_RESPONSES = {
    **streamed("A response object, or response.* events when streaming"),
    **errors(OpenAIError, *LOOP_STATUSES),
}


OUTPUTS_INCLUDE = "code_interpreter_call.outputs"
SOURCES_INCLUDE = "web_search_call.action.sources"


class ReasoningParam(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"] | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None


class ResponsesRequest(BaseModel):
    """A Responses API request. Fields lci does not read are accepted and ignored."""

    model_config = ConfigDict(extra="allow", strict=True)

    model: str | None = Field(None, description="Model name (default: the server's --llm-model).")
    input: str | list[InputItem]
    instructions: str | None = None
    tools: list[dict[str, Any]] = Field(
        default_factory=list,
        description='[{"type": "code_interpreter"}] runs code; "container": "<session id>" '
        'continues in that session. {"type": "shell"} runs shell commands (in the same '
        "container as the code). web_search and web_extractor work beside them when the "
        "server has a search provider. Other built-in tools are ignored.",
    )
    tool_choice: Literal["auto", "none", "required"] | dict[str, Any] = "auto"
    stream: bool = False
    enable_thinking: bool | None = Field(None, description="Thinking mode (DashScope's switch).")
    reasoning: ReasoningParam | None = None
    include: list[str] | None = None
    max_output_tokens: int | None = Field(None, ge=1)
    max_tool_calls: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    metadata: dict[str, str] | None = None
    user: str | None = None
    parallel_tool_calls: bool | None = None
    store: bool = True
    previous_response_id: str | None = None
    python_blocks: bool | None = Field(
        None,
        description="Run fenced ```python blocks of the model's text as code (default: the "
        "server's --python-blocks).",
    )


@router.post("/v1/responses", responses=RESPONSES_RESPONSES, response_model=None)
async def create_response(body: ResponsesRequest, request: Request, state: State) -> Response:
    """Create a response; with the code_interpreter tool, runs the code-interpreter loop."""
    return await create(state, body, request)


@router.post(
    "/api/v2/apps/protocols/compatible-mode/v1/responses",
    responses=RESPONSES_RESPONSES,
    response_model=None,
    include_in_schema=False,
)
async def create_response_alias(body: ResponsesRequest, request: Request, state: State) -> Response:
    return await create(state, body, request)


async def create(state: ServerState, body: ResponsesRequest, request: Request) -> Response:
    tools = read_tools(body.tools, state.options.unsupported_builtin_tools, state.web_available)
    if tools.web and not tools.runs and state.options.unsupported_builtin_tools == "error":
        raise BadParameter("web tools work only beside the code_interpreter or shell tool", "tools")
    effort = body.reasoning.effort if body.reasoning else None
    thinking = False if effort == "none" else body.enable_thinking
    thinking_param = "reasoning.effort" if effort == "none" else "enable_thinking"
    # tool_choice none: the model may not run code, so no loop; required (or the tool named):
    # the first round must call it.
    run_code = tools.runs and body.tool_choice != "none"
    owner = principal_of(request.scope)
    history, container = _previous(state, body, owner)
    response_id = new_id("resp")
    if tools.container is not None:
        _check_owner(state, tools.container, owner)
    if tools.runs:
        container = await responses_container.resolve(state, tools, container, response_id, owner)
    new_messages = input_messages(body.input)
    system = [{"role": "system", "content": body.instructions}] if body.instructions else []
    loop = LoopRequest(
        messages=system + history + new_messages,
        model=body.model or state.settings.llm_model,
        params=upstream_params(_params(body), state.options, thinking),
        keep_session=True,
        container=container if tools.runs else None,
        max_rounds=None if body.max_tool_calls is None else body.max_tool_calls + 1,
        owner=owner,
        tool_choice="required" if _requires_code(body.tool_choice) else "auto",
        python_blocks=body.python_blocks,
        # A container nobody named is short-lived unless a later request continues in it.
        keep_for_s=state.options.implicit_container_ttl_s if container is None else None,
        web_tools=tools.web,
        code_interpreter=tools.code_interpreter,
        shell=tools.shell,
    )

    def remember(output: list[dict[str, Any]], used: str | None) -> None:
        if body.store:
            conversation = history + new_messages + output_messages(output)
            state.part(ResponseStore).put(
                response_id, Stored(conversation, used or container, owner)
            )

    ctx = ResponseContext(
        id=response_id,
        model=loop.model,
        echo=_echo(body, tools.echo),
        code_interpreter=tools.code_interpreter,
        shell=tools.shell,
        outputs_included=not state.options.strict_openai_include
        or OUTPUTS_INCLUDE in (body.include or ()),
        on_completed=remember,
        web_tools=tuple(tools.web) if run_code else (),
        sources_included=not state.options.strict_openai_include
        or SOURCES_INCLUDE in (body.include or ()),
    )
    if tools.runs:
        check_rules(
            state.options,
            function_tools=False,
            thinking=thinking,
            stream=True,
            thinking_param=thinking_param,
        )
    if run_code:
        conversation = Conversation(state, loop)
        ctx.container = responses_container.registering(state, conversation, response_id)
        ctx.files = CallFiles(state.part(ContainerRegistry))
        events = conversation.events()
    else:
        events = plain_events(state, loop)
    renderer = ResponsesRenderer(ctx)
    if body.stream:
        return await respond(request, stream(events, renderer), state.options.heartbeat_s)
    error = await until_disconnected(request, collect(events, renderer))
    if error is not None:
        return rejection("responses", error).response()
    return JSONResponse(renderer.result)


def _check_owner(state: ServerState, container: str, owner: str) -> None:
    """A live container of another key does not exist for this one; an expired container is left
    to the registry, which says it expired."""
    try:
        state.runner.owned(container, owner)
    except SessionNotFound:
        registry = state.part(ContainerRegistry)
        if container in {s.id for s in state.manager.list()} or not registry.knows(container):
            raise ContainerNotFound(f"no container {container!r}", "tools") from None


def _previous(
    state: ServerState, body: ResponsesRequest, owner: str
) -> tuple[list[dict[str, Any]], str | None]:
    """The stored conversation `previous_response_id` continues, and its container if it lives."""
    if body.previous_response_id is None:
        return [], None
    stored = state.part(ResponseStore).get(body.previous_response_id)
    if stored is None or stored.owner != owner:
        raise ResponseNotFound(
            f"no stored response {body.previous_response_id!r}", "previous_response_id"
        )
    container = stored.container
    if container is not None:
        try:
            state.runner.owned(container, owner)
        except SessionNotFound:
            container = None  # expired: the conversation goes on in a new container
    return list(stored.messages), container


def _requires_code(choice: str | dict[str, Any]) -> bool:
    """tool_choice "required", or the code interpreter or shell named: the model must call one."""
    if isinstance(choice, dict):
        return choice.get("type") in ("code_interpreter", "shell")
    return choice == "required"


def _params(body: ResponsesRequest) -> dict[str, Any]:
    fields = body.model_dump(exclude_unset=True)
    if body.max_output_tokens is not None:
        fields["max_tokens"] = body.max_output_tokens
    return fields


def _echo(body: ResponsesRequest, tools: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "instructions": body.instructions,
        "max_output_tokens": body.max_output_tokens,
        "max_tool_calls": body.max_tool_calls,
        "metadata": body.metadata or {},
        "parallel_tool_calls": bool(body.parallel_tool_calls),
        "previous_response_id": body.previous_response_id,
        "reasoning": (body.reasoning or ReasoningParam()).model_dump(),
        "store": body.store,
        "temperature": body.temperature,
        "text": {"format": {"type": "text"}},
        "tool_choice": body.tool_choice
        if isinstance(body.tool_choice, str) or _requires_code(body.tool_choice)
        else "auto",
        "tools": tools,
        "top_p": body.top_p,
        "truncation": "disabled",
        "user": body.user,
    }
