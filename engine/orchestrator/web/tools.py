"""The `web_search` and `web_extractor` tools as the model sees them (definitions in the shape
Qwen-Agent gives its tools of these names), reading their arguments, running them on the providers,
and shaping what goes back to the model: numbered hits with title, URL and snippet; a page's title,
URL and main text cut to a budget."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from engine.orchestrator.calls import loads_lenient
from engine.orchestrator.web.extract import FetchError, PageFetcher
from engine.orchestrator.web.search import SearchError, SearchHit, SearchProvider
from engine.orchestrator.web.url_guard import Refused

WebToolName = Literal["web_search", "web_extractor"]
WEB_SEARCH: WebToolName = "web_search"
WEB_EXTRACTOR: WebToolName = "web_extractor"
WEB_TOOL_NAMES: tuple[WebToolName, ...] = (WEB_SEARCH, WEB_EXTRACTOR)

DEFINITIONS: dict[str, dict[str, Any]] = {
    WEB_SEARCH: {
        "type": "function",
        "function": {
            "name": WEB_SEARCH,
            "description": "Search the web. Returns the title, URL and a snippet of the best "
            "results; read a page in full with web_extractor.",
            "parameters": {
                "type": "object",
                "properties": {"query": {"type": "string", "description": "The search query."}},
                "required": ["query"],
            },
        },
    },
    WEB_EXTRACTOR: {
        "type": "function",
        "function": {
            "name": WEB_EXTRACTOR,
            "description": "Fetch a web page and return its main text.",
            "parameters": {
                "type": "object",
                "properties": {
                    "url": {"type": "string", "description": "The page's URL (http or https)."}
                },
                "required": ["url"],
            },
        },
    },
}


@dataclass
class WebRequest:
    tool: WebToolName
    query: str | None = None  # web_search
    url: str | None = None  # web_extractor

    @property
    def key(self) -> str:
        """What identifies a repeat of this request."""
        value = self.query if self.tool == WEB_SEARCH else self.url
        return f"{self.tool}:{' '.join((value or '').split()).lower()}"


@dataclass
class Source:
    title: str
    url: str
    snippet: str = ""


@dataclass
class WebOutcome:
    """What a web call gave: `ok` False when the provider failed or the URL was refused (`text`
    then says why, for the model); `sources` the hits or the page read."""

    ok: bool
    text: str
    sources: list[Source] = field(default_factory=list)


def read_web_call(tool: WebToolName, arguments: str) -> tuple[WebRequest | None, str | None]:
    """(request, None) when the arguments hold what the tool needs, else (None, problem)."""
    field_name = "query" if tool == WEB_SEARCH else "url"
    value: Any = loads_lenient(arguments) if arguments.strip().startswith("{") else arguments
    if isinstance(value, dict):
        value = value.get(field_name, next(iter(value.values()), None) if len(value) == 1 else None)
    if isinstance(value, list) and value and field_name == "url":  # {"urls": [...]}: the first
        value = value[0]
    if not isinstance(value, str) or not value.strip():
        return None, f'no "{field_name}" string in the arguments'
    value = value.strip()
    if tool == WEB_SEARCH:
        return WebRequest(tool, query=value), None
    return WebRequest(tool, url=value), None


def invalid_web_text(tool: str, problem: str | None) -> str:
    example = '{"query": "..."}' if tool == WEB_SEARCH else '{"url": "https://..."}'
    return (
        f"Error: the arguments of this call could not be read ({problem}). Call `{tool}` again "
        f"with a JSON object such as {example}."
    )


class WebTools:
    """The configured providers: search (None: web_search is not offered) and page extraction
    (None: web_extractor is not offered), with the shaping budgets."""

    def __init__(
        self,
        search: SearchProvider | None,
        fetcher: PageFetcher | None,
        *,
        max_results: int = 5,
        page_chars: int = 8000,
        max_pages: int = 5,
    ) -> None:
        self.search_provider = search
        self.fetcher = fetcher
        self.max_results = max_results
        self.page_chars = page_chars
        self.max_pages = max_pages  # pages one request may fetch

    @property
    def available(self) -> frozenset[str]:
        found = {WEB_SEARCH} if self.search_provider is not None else set()
        return frozenset(found | ({WEB_EXTRACTOR} if self.fetcher is not None else set()))

    async def run(self, request: WebRequest) -> WebOutcome:
        if request.tool == WEB_SEARCH and request.query is not None:
            return await self._search(request.query)
        if request.tool == WEB_EXTRACTOR and request.url is not None:
            return await self._extract(request.url)
        return WebOutcome(False, f"Error: {request.tool} is not available.")

    async def _search(self, query: str) -> WebOutcome:
        if self.search_provider is None:
            return WebOutcome(False, "Error: web search is not available.")
        try:
            hits = await self.search_provider.search(query, self.max_results)
        except SearchError as exc:
            return WebOutcome(False, f"Error: the search failed: {exc}")
        return WebOutcome(True, search_text(query, hits), [_source(hit) for hit in hits])

    async def _extract(self, url: str) -> WebOutcome:
        if self.fetcher is None:
            return WebOutcome(False, "Error: web page extraction is not available.")
        try:
            page = await self.fetcher.extract(url)
        except (Refused, FetchError) as exc:
            return WebOutcome(False, f"Error: the page could not be read: {exc}")
        lines = [f"Title: {page.title}"] if page.title else []
        lines.append(f"URL: {page.url}")
        if page.truncated:
            lines.append(f"(Only the first {self.fetcher.limits.max_bytes} bytes were read.)")
        text = page.text.strip() or "(The page has no readable text.)"
        lines += ["", cut(text, self.page_chars)]
        return WebOutcome(True, "\n".join(lines), [Source(page.title or "", page.url)])


def web_prompt(tools: tuple[str, ...]) -> str:
    """What the default system prompt adds when web tools are offered."""
    if not tools:
        return ""
    parts = []
    if WEB_SEARCH in tools:
        parts.append("search the web with `web_search`")
    if WEB_EXTRACTOR in tools:
        parts.append("read a web page with `web_extractor`")
    return (
        f" You can also {' and '.join(parts)}, for facts you do not know or that may have "
        "changed; say which pages your answer is based on."
    )


def _source(hit: SearchHit) -> Source:
    return Source(hit.title, hit.url, hit.snippet)


def search_text(query: str, hits: list[SearchHit]) -> str:
    if not hits:
        return f"No results for {json.dumps(query, ensure_ascii=False)}."
    parts = [f"Results for {json.dumps(query, ensure_ascii=False)}:"]
    for number, hit in enumerate(hits, 1):
        entry = f"[{number}] {hit.title or hit.url}\nURL: {hit.url}"
        parts.append(f"{entry}\n{hit.snippet}" if hit.snippet else entry)
    return "\n\n".join(parts)


def cut(text: str, chars: int) -> str:
    """`text`, or its first `chars` characters and a note of how much is left out."""
    if len(text) <= chars:
        return text
    return f"{text[:chars]}\n[... {len(text) - chars} more characters not shown ...]"
