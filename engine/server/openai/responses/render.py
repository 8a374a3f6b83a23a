"""Loop events as a Responses API stream (docs/conformance/responses.md, event order) and the final
response object.

Items never interleave: each round's reasoning is one `reasoning` item, visible text a `message`
item, each code block a `code_interpreter_call` item that is announced (and its container named)
before the code runs, so the sandbox works strictly between `interpreting` and `completed`. A call
whose arguments could not be read, or that repeats an earlier call (lci answers it with the earlier
result), runs nothing and gets no item; so the calls shown, the executed blocks and
`usage.x_tools.code_interpreter.count` always agree. A reply the model server cut at its token
limit ends as `incomplete` with `incomplete_details.reason: max_output_tokens`. Every event is validated against the
`openai` package's own type for it before it is sent.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from openai.types.responses import Response

from engine.orchestrator import (
    CodeComplete,
    CodeStart,
    ErrorEvent,
    Event,
    ExecutionResult,
    Final,
    ReasoningDelta,
    RoundStart,
    ShellCall,
    ShellCommandDone,
    ShellResult,
    TextDelta,
    Usage,
    UsageEvent,
    WebCall,
    WebResult,
)
from engine.server.http.errors import Surface
from engine.server.http.sse import named_event
from engine.server.openai.responses.citations import CallFiles
from engine.server.openai.responses.event_types import EVENT_TYPES
from engine.server.openai.responses.items import (
    call_outputs,
    message_item,
    new_id,
    summary,
    text_part,
)
from engine.server.openai.responses.shell import DONE, Piece, ShellItems
from engine.server.openai.responses.web import WebItems


@dataclass
class ResponseContext:
    """What the renderer needs from the request."""

    id: str
    model: str
    echo: dict[str, Any]  # request fields the response object repeats (tools, instructions ...)
    code_interpreter: bool
    outputs_included: bool = True
    container: Callable[[], Awaitable[str]] | None = None  # the session id, started on demand
    on_completed: Callable[[list[dict[str, Any]], str | None], None] | None = None
    files: CallFiles | None = None  # cites the files the code wrote on the answer
    web_tools: tuple[str, ...] = ()  # the web tools the request enabled (counted in x_tools)
    sources_included: bool = True  # web_search_call sources (OpenAI: only when included)
    shell: bool = False  # the shell tool is on (counted in x_tools)


@dataclass
class _Open:
    """The reasoning or message item being streamed."""

    kind: str
    id: str
    index: int
    text: list[str] = field(default_factory=list)
    annotations: list[dict[str, Any]] = field(default_factory=list)


class ResponsesRenderer:
    surface: Surface = "responses"

    def __init__(self, ctx: ResponseContext) -> None:
        self.ctx = ctx
        self.created_at = int(time.time())
        self.sequence = 0
        self.output: list[dict[str, Any]] = []
        self.open: _Open | None = None
        self.calls: dict[str, dict[str, Any]] = {}  # call id -> the item while it runs
        self.count = 0
        self.container: str | None = None
        self.result: dict[str, Any] | None = None  # the final response object
        self.web = WebItems(ctx.sources_included)
        self.shell = ShellItems()

    def start(self) -> list[str]:
        snapshot = self.response("in_progress")
        return [
            self._event("response.created", response=snapshot),
            self._event("response.in_progress", response=snapshot),
        ]

    async def feed(self, event: Event) -> list[str]:
        if isinstance(event, (RoundStart, CodeStart)):
            return self._close()
        if isinstance(event, ReasoningDelta):
            return self._delta("reasoning", event.text)
        if isinstance(event, TextDelta):
            return self._delta("message", event.text)
        if isinstance(event, CodeComplete):
            return self._close() + await self._announce(event)
        if isinstance(event, ExecutionResult):
            return self._result(event)
        if isinstance(event, WebCall):
            closed = self._close()  # first: the item's index is the next one after it
            added = self.web.announce(event, len(self.output))
            return closed + [self._event(kind, **fields) for kind, fields in added]
        if isinstance(event, WebResult):
            found = self.web.complete(event)
            if found is None:
                return []
            index, item, before = found
            return [*(self._event(k, **f) for k, f in before), self._done(index, item)]
        if isinstance(event, ShellCall):
            closed = self._close()
            if not event.runs:
                return closed
            container = await self._container()
            return closed + self._emit(self.shell.announce(event, len(self.output), container))
        if isinstance(event, ShellCommandDone):
            return self._emit(self.shell.command_done(event))
        if isinstance(event, ShellResult):
            return self._emit(self.shell.complete(event))
        if isinstance(event, UsageEvent):
            return []
        if isinstance(event, Final):
            return await self._final(event)
        assert isinstance(event, ErrorEvent)
        return self._failed(event)

    # -- reasoning and message items -----------------------------------------------------------
    def _delta(self, kind: str, text: str) -> list[str]:
        pieces = [] if self.open is not None and self.open.kind == kind else self._close()
        if self.open is None:
            pieces += self._begin(kind)
        assert self.open is not None
        self.open.text.append(text)
        where = self._where(self.open)
        if kind == "reasoning":
            pieces.append(self._event("response.reasoning_summary_text.delta", **where, delta=text))
        else:
            pieces.append(
                self._event("response.output_text.delta", **where, delta=text, logprobs=[])
            )
        return pieces

    def _begin(self, kind: str) -> list[str]:
        item = _Open(kind, new_id("rs" if kind == "reasoning" else "msg"), self._next_index())
        self.open = item
        if kind == "reasoning":
            added = {"id": item.id, "type": "reasoning", "summary": []}
            part_added = ("response.reasoning_summary_part.added", summary(""))
        else:
            added = message_item(item.id, "in_progress", None)
            part_added = ("response.content_part.added", text_part(""))
        return [
            self._event("response.output_item.added", output_index=item.index, item=added),
            self._event(part_added[0], **self._where(item), part=part_added[1]),
        ]

    def _close(self, status: str = "completed") -> list[str]:
        item, self.open = self.open, None
        if item is None:
            return []
        text, where = "".join(item.text), self._where(item)
        if item.kind == "reasoning":
            done = {"id": item.id, "type": "reasoning", "summary": [summary(text)]}
            pieces = [
                self._event("response.reasoning_summary_text.done", **where, text=text),
                self._event("response.reasoning_summary_part.done", **where, part=summary(text)),
            ]
        else:
            done = message_item(item.id, status, text, item.annotations)
            part = text_part(text, item.annotations)
            pieces = [
                self._event("response.output_text.done", **where, text=text, logprobs=[]),
                self._event("response.content_part.done", **where, part=part),
            ]
        return [*pieces, self._done(item.index, done)]

    # -- code calls ----------------------------------------------------------------------------
    async def _announce(self, event: CodeComplete) -> list[str]:
        if not event.runs:
            return []  # a refused repeat or unreadable arguments: nothing will run
        self.container = await self._container()
        index = self._next_index()
        item = {
            "id": new_id("ci"),
            "type": "code_interpreter_call",
            "status": "in_progress",
            "code": "",
            "container_id": self.container,
            "outputs": None,
        }
        self.calls[event.call_id] = {**item, "code": event.code, "index": index}
        where = {"item_id": item["id"], "output_index": index}
        return [
            self._event("response.output_item.added", output_index=index, item=item),
            self._event("response.code_interpreter_call.in_progress", **where),
            self._event("response.code_interpreter_call_code.delta", **where, delta=event.code),
            self._event("response.code_interpreter_call_code.done", **where, code=event.code),
            self._event("response.code_interpreter_call.interpreting", **where),
        ]

    async def _container(self) -> str:
        """The container code and commands run in, started now if need be; its files noted
        before anything runs in it (to cite the files written)."""
        assert self.ctx.container is not None, "nothing runs without a tool that runs"
        self.container = await self.ctx.container()
        if self.ctx.files is not None:
            await self.ctx.files.note(self.container)
        return self.container

    def _result(self, event: ExecutionResult) -> list[str]:
        call = self.calls.pop(event.call_id, None)
        if call is None:
            return []
        self.count += 1
        index = call.pop("index")
        call["status"] = "completed"  # only calls with readable code were announced
        call["outputs"] = call_outputs(event) if self.ctx.outputs_included else None
        completed = self._event(
            "response.code_interpreter_call.completed", item_id=call["id"], output_index=index
        )
        return [completed, self._done(index, call)]

    # -- the end -------------------------------------------------------------------------------
    async def _final(self, event: Final) -> list[str]:
        status = "incomplete" if event.finish_reason == "length" else "completed"
        pieces = (
            [] if self.open is not None and self.open.kind == "message" else self._close(status)
        )
        if self.open is None and (not self.output or self.output[-1]["type"] != "message"):
            pieces += self._begin("message")  # the answer, even when empty
        pieces += await self._cite() + self._close(status)
        if event.finish_reason == "length":
            details = {"reason": "max_output_tokens"} if event.incomplete == "max_tokens" else None
            self.result = self.response("incomplete", usage=event.usage, incomplete=details)
            return [*pieces, self._event("response.incomplete", response=self.result)]
        self.result = self.response("completed", usage=event.usage)
        if self.ctx.on_completed is not None:
            self.ctx.on_completed(self.output, self.container)
        return [*pieces, self._event("response.completed", response=self.result)]

    async def _cite(self) -> list[str]:
        """Annotations of the files the code wrote, on the open answer (if one is open)."""
        if self.ctx.files is None or self.open is None:
            return []
        self.open.annotations = await self.ctx.files.annotations("".join(self.open.text))
        where = self._where(self.open)
        return [
            self._event(
                "response.output_text.annotation.added",
                **where,
                annotation_index=index,
                annotation=annotation,
            )
            for index, annotation in enumerate(self.open.annotations)
        ]

    def _failed(self, event: ErrorEvent) -> list[str]:
        pieces = self._close("incomplete")
        for call in list(self.calls.values()):
            index = call.pop("index")
            pieces.append(self._done(index, {**call, "status": "incomplete"}))
        self.calls.clear()
        pieces += [self._done(index, item) for index, item in self.web.abandon()]
        pieces += self._emit(self.shell.abandon())
        code = "rate_limit_exceeded" if event.status == 429 else "server_error"
        error = {"code": code, "message": event.message}
        self.result = self.response("failed", usage=event.usage, error=error)
        return [*pieces, self._event("response.failed", response=self.result)]

    def response(
        self,
        status: str,
        *,
        usage: Usage | None = None,
        error: dict[str, Any] | None = None,
        incomplete: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """The response object (docs/conformance/responses.md, response object) as it is now."""
        data: dict[str, Any] = {
            "id": self.ctx.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "background": False,
            "error": error,
            "incomplete_details": incomplete,
            **self.ctx.echo,
            "model": self.ctx.model,
            "output": [] if status == "in_progress" else list(self.output),
            "usage": None if usage is None else self._usage(usage),
        }
        if status == "completed":
            data["completed_at"] = int(time.time())
        return Response.model_validate(data).model_dump(mode="json", exclude_unset=True)

    def _usage(self, usage: Usage) -> dict[str, Any]:
        data: dict[str, Any] = {
            "input_tokens": usage.input_tokens,
            "input_tokens_details": {
                "cached_tokens": usage.cached_tokens,
                "cache_write_tokens": 0,
            },
            "output_tokens": usage.output_tokens,
            "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
            "total_tokens": usage.total_tokens,
        }
        if self.ctx.code_interpreter:
            data["x_tools"] = {"code_interpreter": {"count": self.count}}
        if self.ctx.shell:
            data["x_tools"] = {**data.get("x_tools", {}), "shell": {"count": self.shell.count}}
        if self.ctx.web_tools:
            data["x_tools"] = {**data.get("x_tools", {}), **self.web.usage(self.ctx.web_tools)}
        return data

    # -- plumbing ------------------------------------------------------------------------------
    def _next_index(self) -> int:
        # Items never interleave: when one is added, every earlier one is done.
        return len(self.output)

    def _where(self, item: _Open) -> dict[str, Any]:
        index = "summary_index" if item.kind == "reasoning" else "content_index"
        return {"item_id": item.id, "output_index": item.index, index: 0}

    def _emit(self, pieces: list[Piece]) -> list[str]:
        """Events from (type, fields) pieces; an output_item.done records its item."""
        return [
            self._done(f["output_index"], f["item"]) if k == DONE else self._event(k, **f)
            for k, f in pieces
        ]

    def _done(self, index: int, item: dict[str, Any]) -> str:
        self.output.append(item)
        return self._event("response.output_item.done", output_index=index, item=item)

    def _event(self, kind: str, **fields: Any) -> str:
        event = EVENT_TYPES[kind].model_validate(
            {"type": kind, "sequence_number": self.sequence, **fields}
        )
        self.sequence += 1
        return named_event(kind, event.model_dump_json(exclude_unset=True))
