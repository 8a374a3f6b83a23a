"""DashScope native results (docs/conformance/dashscope.md, events): the loop's events as
`event:result` SSE events or one JSON body, and a plain completion's chunks the same way (no code
interpreter).

Every event carries the message (`content`, `reasoning_content`: the new text with incremental
output, all text so far without), `finish_reason` as the string "null" until the last event, the
cumulative `tool_info` from the first executed block on, the running `usage`, and one `request_id`.
Web calls that ran are `tool_info` entries of their own type (`{"type": "web_search",
"web_search": {"query": ...}}`, `{"type": "web_extractor", "web_extractor": {"url": ...}}`), the
hits of searches are listed in `output.search_info.search_results`, and `usage.plugins` counts
them as `search` and `web_extractor` (the hosted service's names).
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlsplit

from engine.orchestrator import (
    ErrorEvent,
    Event,
    ExecutionResult,
    Final,
    ReasoningDelta,
    TextDelta,
    Usage,
    UsageEvent,
    WebResult,
    normalize,
)
from engine.server.http.errors import Surface, error_body, status_for
from engine.server.http.sse import compact_json


def dashscope_event(number: int, payload: str, status: int = 200) -> str:
    """DashScope native framing: no space after the colons; errors carry a `status:` line, which
    is what the SDK reads the status code from."""
    if status == 200:
        return f"id:{number}\nevent:result\n:HTTP_STATUS/200\ndata:{payload}\n\n"
    return f"id:{number}\nevent:error\n:HTTP_STATUS/{status}\nstatus:{status}\ndata:{payload}\n\n"


class _Base:
    surface: Surface = "dashscope"

    def __init__(self, incremental: bool) -> None:
        self.request_id = str(uuid.uuid4())
        self.incremental = incremental
        self.number = 0
        self.content: list[str] = []
        self.reasoning: list[str] = []
        self.usage = Usage()

    def start(self) -> list[str]:
        return []

    def _usage(self) -> dict[str, Any]:
        return {
            "input_tokens": self.usage.input_tokens,
            "output_tokens": self.usage.output_tokens,
            "total_tokens": self.usage.total_tokens,
            "output_tokens_details": {"reasoning_tokens": self.usage.reasoning_tokens},
        }

    def _texts(self, content: str, reasoning: str) -> tuple[str, str]:
        """What an event carries: the new text, or with cumulative output all text so far."""
        self.content.append(content)
        self.reasoning.append(reasoning)
        if self.incremental:
            return content, reasoning
        return "".join(self.content), "".join(self.reasoning)

    def _send(self, payload: dict[str, Any]) -> str:
        self.number += 1
        return dashscope_event(self.number, compact_json(payload))

    def _error(self, code: str, message: str, upstream_status: int | None) -> str:
        status = status_for(code, upstream_status)
        body = error_body("dashscope", code, message, status, request_id=self.request_id)
        self.number += 1
        return dashscope_event(self.number, compact_json(body), status)


class DashScopeRenderer(_Base):
    """The code-interpreter loop on the native surface."""

    def __init__(self, incremental: bool, *, web: bool = False) -> None:
        super().__init__(incremental)
        self.tool_info: list[dict[str, Any]] = []
        self.finish_reason = "stop"
        self.web = web  # the request enabled web tools: their counts are always reported
        self.counts = {"code_interpreter": 0, "search": 0, "web_extractor": 0}
        self.search_results: list[dict[str, Any]] = []

    async def feed(self, event: Event) -> list[str]:
        if isinstance(event, ReasoningDelta):
            return [self._result(*self._texts("", event.text))]
        if isinstance(event, TextDelta):
            return [self._result(*self._texts(event.text, ""))]
        if isinstance(event, UsageEvent):
            self.usage = event.total
        elif isinstance(event, ExecutionResult) and event.status == "executed":
            # Only code that ran: a refused repeat or an unreadable call is not an execution.
            self.tool_info.append(
                {"type": "code_interpreter", "code_interpreter": {"code": event.code}}
            )
            self.counts["code_interpreter"] += 1
            return [self._result(*self._texts("", ""))]
        elif isinstance(event, WebResult) and event.ran:
            self._web(event)
            return [self._result(*self._texts("", ""))]
        elif isinstance(event, Final):
            self.usage, self.finish_reason = event.usage, event.finish_reason
            return [self._result(*self._texts("", ""), finish=event.finish_reason)]
        elif isinstance(event, ErrorEvent):
            return [self._error(event.code, event.message, event.status)]
        return []

    def _result(self, content: str, reasoning: str, finish: str = "null") -> str:
        return self._send(self._payload(content, reasoning, finish))

    def _payload(self, content: str, reasoning: str, finish: str) -> dict[str, Any]:
        message = {"role": "assistant", "content": content, "reasoning_content": reasoning}
        output: dict[str, Any] = {"choices": [{"message": message, "finish_reason": finish}]}
        if self.tool_info:
            output["tool_info"] = list(self.tool_info)
        if self.search_results:
            output["search_info"] = {"search_results": list(self.search_results)}
        usage = self._usage()
        if self.tool_info or finish != "null":
            plugins = {"code_interpreter": {"count": self.counts["code_interpreter"]}}
            if self.web:
                plugins.update(
                    search={"count": self.counts["search"]},
                    web_extractor={"count": self.counts["web_extractor"]},
                )
            usage["plugins"] = plugins
        return {"output": output, "usage": usage, "request_id": self.request_id}

    def _web(self, event: WebResult) -> None:
        """A web call that ran: its tool_info entry, and the hits of a search (numbered across
        the request, as the hosted service's `search_info`)."""
        if event.tool == "web_search":
            self.counts["search"] += 1
            detail = {"query": event.query or ""}
            for source in event.sources:
                self.search_results.append(
                    {
                        "index": len(self.search_results) + 1,
                        "title": source.title,
                        "url": source.url,
                        "site_name": urlsplit(source.url).hostname or "",
                    }
                )
        else:
            self.counts["web_extractor"] += 1
            detail = {"url": event.url or ""}
        self.tool_info.append({"type": event.tool, event.tool: detail})

    def body(self) -> dict[str, Any]:
        """The unstreamed result (docs/conformance/dashscope.md, unstreamed answer)."""
        return self._payload("".join(self.content), "".join(self.reasoning), self.finish_reason)


class PlainRenderer(_Base):
    """A completion without the code interpreter: upstream chunks as native events, tool calls of
    the client's own function tools included; `result_format: text` puts the text in
    `output.text`."""

    def __init__(self, incremental: bool, text_format: bool) -> None:
        super().__init__(incremental)
        self.text_format = text_format
        self.finish_reason = "stop"
        self.tool_calls: list[dict[str, Any]] = []

    def chunk(self, raw: dict[str, Any]) -> list[str]:
        """The event of one upstream chunk (none for chunks without new text or calls)."""
        chunk = normalize(raw)
        self.usage = chunk.usage or self.usage
        if chunk.finish_reason:
            self.finish_reason = chunk.finish_reason
        calls = [
            call
            for choice in _list(raw.get("choices"))
            if isinstance(choice, dict) and isinstance(choice.get("delta"), dict)
            for call in _list(choice["delta"].get("tool_calls"))
            if isinstance(call, dict)
        ]
        self.tool_calls.extend(calls)
        if not (chunk.text or chunk.reasoning or calls):
            return []
        content, reasoning = self._texts(chunk.text, chunk.reasoning)
        return [self._send(self._payload(content, reasoning, "null", calls))]

    def final(self) -> list[str]:
        content, reasoning = self._texts("", "")
        return [self._send(self._payload(content, reasoning, self.finish_reason, []))]

    def error(self, code: str, message: str, upstream_status: int | None) -> list[str]:
        return [self._error(code, message, upstream_status)]

    def _payload(
        self, content: str, reasoning: str, finish: str, calls: list[dict[str, Any]]
    ) -> dict[str, Any]:
        output: dict[str, Any]
        if self.text_format:
            output = {"text": content, "finish_reason": finish}
        else:
            message: dict[str, Any] = {
                "role": "assistant",
                "content": content,
                "reasoning_content": reasoning,
            }
            if calls:
                message["tool_calls"] = calls
            output = {"choices": [{"message": message, "finish_reason": finish}]}
        return {"output": output, "usage": self._usage(), "request_id": self.request_id}

    def body(self) -> dict[str, Any]:
        content, reasoning = "".join(self.content), "".join(self.reasoning)
        payload = self._payload(content, reasoning, self.finish_reason, [])
        if self.tool_calls and not self.text_format:
            payload["output"]["choices"][0]["message"]["tool_calls"] = _merge_calls(self.tool_calls)
        return payload


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _merge_calls(fragments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Streamed tool-call fragments merged into whole calls, by index."""
    calls: dict[int, dict[str, Any]] = {}
    for fragment in fragments:
        index = fragment.get("index", 0) if isinstance(fragment.get("index"), int) else 0
        call = calls.setdefault(
            index, {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
        )
        call["id"] = call["id"] or fragment.get("id")
        function = fragment.get("function") or {}
        call["function"]["name"] = call["function"]["name"] or function.get("name") or ""
        call["function"]["arguments"] += function.get("arguments") or ""
    return [calls[i] for i in sorted(calls)]
