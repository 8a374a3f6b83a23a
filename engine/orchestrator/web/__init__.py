"""Web tools beside the code interpreter: `web_search` through a SearXNG instance and
`web_extractor` fetching pages behind an SSRF guard, with their main text extracted."""

from engine.orchestrator.web.extract import FetchError, FetchLimits, Page, PageFetcher
from engine.orchestrator.web.search import SearchError, SearchHit, SearchProvider, SearxngSearch
from engine.orchestrator.web.tools import (
    WEB_EXTRACTOR,
    WEB_SEARCH,
    WEB_TOOL_NAMES,
    Source,
    WebOutcome,
    WebRequest,
    WebToolName,
    WebTools,
)
from engine.orchestrator.web.url_guard import AddressGuard, Refused, Target, refusal

__all__ = [
    "WEB_EXTRACTOR",
    "WEB_SEARCH",
    "WEB_TOOL_NAMES",
    "AddressGuard",
    "FetchError",
    "FetchLimits",
    "Page",
    "PageFetcher",
    "Refused",
    "SearchError",
    "SearchHit",
    "SearchProvider",
    "SearxngSearch",
    "Source",
    "Target",
    "WebOutcome",
    "WebRequest",
    "WebToolName",
    "WebTools",
    "refusal",
]
