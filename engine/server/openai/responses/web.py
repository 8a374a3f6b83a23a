"""Web calls on the Responses surface: each web_search or web_extractor call that runs is one
`web_search_call` item (OpenAI's type; a search is a `search` action with its query and sources,
a page read an `open_page` action with its URL), streamed as

    output_item.added(status in_progress)  web_search_call.in_progress  web_search_call.searching
    web_search_call.completed  output_item.done(status completed | failed)

and counted in `usage.x_tools.web_search` / `web_extractor`. Calls lci answered without running
them (repeats, unreadable arguments, the page limit) get no item and no count, as code calls."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.orchestrator import WEB_SEARCH, WebCall, WebResult
from engine.server.openai.responses.items import new_id

Piece = tuple[str, dict[str, Any]]  # an event's type and fields


def _action(tool: str, query: str | None, url: str | None) -> dict[str, Any]:
    if tool == WEB_SEARCH:
        return {"type": "search", "query": query or "", "queries": [query or ""]}
    return {"type": "open_page", "url": url}


@dataclass
class WebItems:
    sources_included: bool = True  # OpenAI adds sources only when include asks for them
    counts: dict[str, int] = field(default_factory=dict)
    _open: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)

    def announce(self, event: WebCall, index: int) -> list[Piece]:
        """The events that add the call's item at `index` (none for a call that will not run)."""
        if not event.runs:
            return []
        item = {
            "id": new_id("ws"),
            "type": "web_search_call",
            "status": "in_progress",
            "action": _action(event.tool, event.query, event.url),
        }
        self._open[event.call_id] = (index, item)
        where = {"item_id": item["id"], "output_index": index}
        return [
            ("response.output_item.added", {"output_index": index, "item": item}),
            ("response.web_search_call.in_progress", where),
            ("response.web_search_call.searching", where),
        ]

    def complete(self, event: WebResult) -> tuple[int, dict[str, Any], list[Piece]] | None:
        """(index, final item, events before its output_item.done), or None for a call without
        an item."""
        found = self._open.pop(event.call_id, None)
        if found is None:
            return None
        index, item = found
        self.counts[event.tool] = self.counts.get(event.tool, 0) + 1
        done = {**item, "status": "completed" if event.status == "completed" else "failed"}
        if event.tool == WEB_SEARCH and self.sources_included:
            sources = [{"type": "url", "url": source.url} for source in event.sources]
            done["action"] = {**item["action"], "sources": sources}
        where = {"item_id": item["id"], "output_index": index}
        return index, done, [("response.web_search_call.completed", where)]

    def abandon(self) -> list[tuple[int, dict[str, Any]]]:
        """Items of calls still running when the response ended: incomplete."""
        left = [(index, {**item, "status": "incomplete"}) for index, item in self._open.values()]
        self._open.clear()
        return left

    def usage(self, enabled: tuple[str, ...]) -> dict[str, Any]:
        """The `x_tools` entries of the enabled web tools (present, with 0, when unused)."""
        return {tool: {"count": self.counts.get(tool, 0)} for tool in enabled}
