"""The web tools of the server: built from its options at startup, and which ones a Chat or
DashScope request enables (`enable_search`, with `search_options.search_strategy: "agent_max"`
for the extractor too, as the hosted service has it)."""

from __future__ import annotations

from typing import Any

from engine.errors import BadParameter
from engine.orchestrator import (
    WEB_EXTRACTOR,
    WEB_SEARCH,
    AddressGuard,
    FetchLimits,
    PageFetcher,
    SearxngSearch,
    WebTools,
)
from engine.server.runtime.options import ServerOptions

AGENT_MAX = "agent_max"


def build_web_tools(options: ServerOptions) -> WebTools | None:
    """The configured providers, or None when no web tool is on."""
    search = None
    if options.web_search_url:
        search = SearxngSearch(options.web_search_url, timeout_s=options.web_timeout_s)
    extractor = options.web_extractor == "on" or (
        options.web_extractor == "auto" and search is not None
    )
    fetcher = None
    if extractor:
        limits = FetchLimits(timeout_s=options.web_timeout_s, max_bytes=options.web_max_page_bytes)
        fetcher = PageFetcher(AddressGuard(options.web_allow_hosts), limits)
    if search is None and fetcher is None:
        return None
    return WebTools(
        search,
        fetcher,
        max_results=options.web_max_results,
        page_chars=options.web_page_chars,
        max_pages=options.web_max_pages,
    )


def search_tools(
    enable_search: bool | None,
    search_options: Any,
    available: frozenset[str],
    options: ServerOptions,
    param: str = "enable_search",
) -> list[str]:
    """The web tools `enable_search` turns on; with no provider, none (or a 400 when the server
    refuses built-in tools it lacks)."""
    if not enable_search:
        return []
    strategy = search_options.get("search_strategy") if isinstance(search_options, dict) else None
    wanted = [WEB_SEARCH, *([WEB_EXTRACTOR] if strategy == AGENT_MAX else [])]
    missing = [tool for tool in wanted if tool not in available]
    if missing and options.unsupported_builtin_tools == "error":
        raise BadParameter(f"{', '.join(missing)} is not configured on this server", param)
    return [tool for tool in wanted if tool in available]
