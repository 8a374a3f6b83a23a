"""Surface B: OpenAI-compatible Chat Completions (docs/conformance/chat.md).

With `enable_code_interpreter` (top level, or the SDK's `extra_body`) the tool loop runs and the
stream carries every round's thinking in `delta.reasoning_content` and the answer in
`delta.content`; code and its output stay server-side, and so do the web tools that
`enable_search` turns on (web_search; with `search_options.search_strategy: "agent_max"` also
web_extractor), and the shell tool that `enable_shell` adds (its commands run in the code's
session). Without it the request is forwarded to the model server as it came.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from openai.types import CompletionUsage
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import BaseModel, ConfigDict, Field

from engine.orchestrator import (
    CodeComplete,
    ErrorEvent,
    Event,
    Final,
    ReasoningDelta,
    ShellCall,
    TextDelta,
    Usage,
    WebCall,
)
from engine.server.http.auth import principal_of
from engine.server.http.errors import OpenAIError, Surface, error_body, status_for
from engine.server.http.openapi import LOOP_STATUSES, errors, streamed
from engine.server.http.sse import DONE, compact_json, data_event, respond, until_disconnected
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

router = APIRouter(tags=["OpenAI-compatible"])
CHAT_RESPONSES = {
    **streamed("A chat.completion, or chat.completion.chunk events when streaming"),
    **errors(OpenAIError, *LOOP_STATUSES),
}


class ChatRequest(BaseModel):
    """A Chat Completions request. Fields lci does not read are forwarded as they are."""

    model_config = ConfigDict(extra="allow", strict=True)

    model: str | None = Field(None, description="Model name (default: the server's --llm-model).")
    messages: list[dict[str, Any]] = Field(min_length=1)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    enable_code_interpreter: bool = Field(
        False, description="Run the code-interpreter loop (DashScope's switch)."
    )
    enable_thinking: bool | None = Field(None, description="Thinking mode (DashScope's switch).")
    tools: list[dict[str, Any]] | None = Field(
        None, description="Function tools: forwarded without the code interpreter, refused with it."
    )
    python_blocks: bool | None = Field(
        None,
        description="Run fenced ```python blocks of the model's text as code (default: the "
        "server's --python-blocks).",
    )
    enable_search: bool | None = Field(
        None,
        description="With the code interpreter: offer web_search (DashScope's switch), when the "
        "server has a search provider.",
    )
    search_options: dict[str, Any] | None = Field(
        None, description='{"search_strategy": "agent_max"} adds web_extractor.'
    )
    enable_shell: bool | None = Field(
        None,
        description="With the code interpreter: offer the shell tool too (lci's switch); its "
        "commands run in the same session as the code.",
    )


@router.post("/v1/chat/completions", responses=CHAT_RESPONSES, response_model=None)
async def chat_completions(body: ChatRequest, request: Request, state: State) -> Response:
    """Chat Completions; with `enable_code_interpreter: true` runs the code-interpreter loop."""
    return await complete(state, body, request)


@router.post(
    "/compatible-mode/v1/chat/completions",
    responses=CHAT_RESPONSES,
    response_model=None,
    include_in_schema=False,
)
async def chat_completions_alias(body: ChatRequest, request: Request, state: State) -> Response:
    return await complete(state, body, request)


async def complete(state: ServerState, body: ChatRequest, request: Request) -> Response:
    if not body.enable_code_interpreter:
        return await state.proxy.forward_chat(await request.json())
    check_rules(
        state.options,
        function_tools=bool(body.tools),
        thinking=body.enable_thinking,
        stream=body.stream,
    )
    model = body.model or state.settings.llm_model
    fields = body.model_dump(exclude_unset=True)
    conversation = Conversation(
        state,
        LoopRequest(
            messages=body.messages,
            model=model,
            params=upstream_params(fields, state.options, body.enable_thinking),
            owner=principal_of(request.scope),
            python_blocks=body.python_blocks,
            web_tools=search_tools(
                body.enable_search, body.search_options, state.web_available, state.options
            ),
            shell=bool(body.enable_shell),
        ),
    )
    include_usage = bool((body.stream_options or {}).get("include_usage"))
    renderer = ChatRenderer(model, include_usage)
    if body.stream:
        return await respond(
            request, stream(conversation.events(), renderer), state.options.heartbeat_s
        )
    error = await until_disconnected(request, collect(conversation.events(), renderer))
    if error is not None:
        return rejection("chat", error).response()
    return JSONResponse(renderer.completion())


class ChatRenderer:
    """Loop events as `chat.completion.chunk`s (docs/conformance/chat.md, stream), or one
    `chat.completion`."""

    surface: Surface = "chat"

    def __init__(self, model: str, include_usage: bool) -> None:
        self.request_id = str(uuid.uuid4())
        self.id = f"chatcmpl-{self.request_id}"
        self.created = int(time.time())
        self.model = model
        self.include_usage = include_usage
        self.reasoning: list[str] = []
        self.text: list[str] = []
        self.usage = Usage()
        self.finish_reason = "stop"

    def start(self) -> list[str]:
        return [self._chunk({"role": "assistant", "content": None, "reasoning_content": ""})]

    async def feed(self, event: Event) -> list[str]:
        if isinstance(event, ReasoningDelta):
            self.reasoning.append(event.text)
            return [self._chunk({"content": None, "reasoning_content": event.text})]
        if isinstance(event, TextDelta):
            self.text.append(event.text)
            return [self._chunk({"content": event.text, "reasoning_content": None})]
        if isinstance(event, CodeComplete):
            return [": keep-alive (code_interpreter running)\n\n"]
        if isinstance(event, WebCall):
            return [f": keep-alive ({event.tool} running)\n\n"]
        if isinstance(event, ShellCall):
            return [": keep-alive (shell running)\n\n"]
        if isinstance(event, Final):
            self.usage, self.finish_reason = event.usage, event.finish_reason
            pieces = [self._chunk({"content": "", "reasoning_content": None}, event.finish_reason)]
            if self.include_usage:
                pieces.append(self._envelope([], completion_usage(self.usage)))
            return [*pieces, DONE]
        if isinstance(event, ErrorEvent):
            status = status_for(event.code, event.status)
            body = error_body("chat", event.code, event.message, status, request_id=self.request_id)
            return [data_event(compact_json(body)), DONE]
        return []

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> str:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return self._envelope([choice], None)

    def _envelope(self, choices: list[dict[str, Any]], usage: CompletionUsage | None) -> str:
        """One `chat.completion.chunk` event with these choices and usage."""
        chunk = ChatCompletionChunk.model_validate(
            {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "system_fingerprint": None,
                "choices": choices,
                "usage": usage,
            }
        )
        return data_event(chunk.model_dump_json(exclude_unset=True))

    def completion(self) -> dict[str, Any]:
        message = {
            "role": "assistant",
            "content": "".join(self.text),
            # null, not "", when the model server sent no reasoning: a model without thinking
            # is then told apart from one that thought nothing.
            "reasoning_content": "".join(self.reasoning) if self.reasoning else None,
        }
        completion = ChatCompletion.model_validate(
            {
                "id": self.id,
                "object": "chat.completion",
                "created": self.created,
                "model": self.model,
                "system_fingerprint": None,
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "logprobs": None,
                        "finish_reason": self.finish_reason,
                    }
                ],
                "usage": completion_usage(self.usage),
            }
        )
        return completion.model_dump(mode="json", exclude_unset=True)


def completion_usage(usage: Usage) -> CompletionUsage:
    return CompletionUsage.model_validate(
        {
            "prompt_tokens": usage.input_tokens,
            "completion_tokens": usage.output_tokens,
            "total_tokens": usage.total_tokens,
            "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
            "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
        }
    )
