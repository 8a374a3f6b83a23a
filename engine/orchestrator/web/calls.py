"""One web tool call inside the loop: read its arguments, answer repeats and calls over the page
limit without running them, run the rest on the providers within the request's deadline, and
append the tool message. Yields `web_call` then `web_result` (see `events`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from engine import observe
from engine.orchestrator.calls import ToolCall
from engine.orchestrator.events import Event, WebCall, WebResult, WebSource
from engine.orchestrator.tool import clip
from engine.orchestrator.web.tools import (
    WEB_EXTRACTOR,
    WebOutcome,
    WebToolName,
    WebTools,
    invalid_web_text,
    read_web_call,
)

Status = Literal["completed", "failed", "repeated", "invalid", "limit"]


@dataclass
class WebState:
    """The web calls of one run: its budget of one result, its deadline (loop time), what to do
    on a repeat (a strike of the loop guard); pages fetched and results by request (repeats)."""

    budget_bytes: int
    deadline: float | None
    on_repeat: Callable[[], None]
    pages: int = 0
    done: dict[str, str] = field(default_factory=dict)


def repeated_web_text(previous: str) -> str:
    return (
        "This call is identical to an earlier one, so it was not run again. Its result was:"
        f"\n\n{previous}\n\nUse this result, or call the tool with different arguments."
    )


async def run_web_call(
    web: WebTools,
    state: WebState,
    messages: list[dict[str, Any]],
    round_number: int,
    call: ToolCall,
) -> AsyncGenerator[Event, None]:
    """Raises TimeoutError when the deadline passes while the call runs."""
    tool = cast(WebToolName, call.name)
    request, problem = read_web_call(tool, call.arguments)
    query = request.query if request is not None else None
    url = request.url if request is not None else None
    earlier = state.done.get(request.key) if request is not None else None
    over = tool == WEB_EXTRACTOR and state.pages >= web.max_pages
    runs = request is not None and earlier is None and not over
    ids = {"round": round_number, "call_id": call.id, "tool": tool, "query": query, "url": url}
    yield WebCall(**ids, runs=runs)
    outcome: WebOutcome | None = None
    status: Status
    if request is None:
        status, text = "invalid", invalid_web_text(tool, problem)
    elif earlier is not None:
        status, text = "repeated", repeated_web_text(earlier)
        state.on_repeat()
    elif over:
        status = "limit"
        text = (
            f"Error: this request may read at most {web.max_pages} pages, and it has. Answer "
            "with what you have."
        )
    else:
        if tool == WEB_EXTRACTOR:
            state.pages += 1
        with observe.span("web." + tool, round=round_number):
            async with asyncio.timeout_at(state.deadline):
                outcome = await web.run(request)
        status, text = ("completed" if outcome.ok else "failed"), outcome.text
        state.done[request.key] = text
    observe.get().web_called(tool, status)
    text = clip(text, state.budget_bytes)
    messages.append({"role": "tool", "tool_call_id": call.id, "content": text})
    sources = [
        WebSource(title=s.title, url=s.url, snippet=s.snippet)
        for s in (outcome.sources if outcome is not None else [])
    ]
    yield WebResult(**ids, status=status, sources=sources, output=text)
