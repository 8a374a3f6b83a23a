"""Web search through a SearXNG instance's JSON API (`GET /search?q=...&format=json`).

The instance is the operator's own (configured with `--web-search-url`), so it is reached directly,
not through the address guard: it usually runs on the same host or in the same network. Its
`settings.yml` must list `json` under `search.formats`, or it answers 403.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Protocol

import httpx


class SearchError(Exception):
    """The search provider failed; the message is shown to the model."""


@dataclass
class SearchHit:
    title: str
    url: str
    snippet: str


class SearchProvider(Protocol):
    async def search(self, query: str, max_results: int) -> list[SearchHit]:
        """The best `max_results` hits for `query`. Raises SearchError."""
        ...


class SearxngSearch:
    def __init__(self, base_url: str, *, timeout_s: float = 15.0) -> None:
        self.endpoint = base_url.rstrip("/") + "/search"
        self.timeout_s = timeout_s

    async def search(self, query: str, max_results: int) -> list[SearchHit]:
        params = {"q": query, "format": "json"}
        try:
            async with (
                asyncio.timeout(self.timeout_s),  # the whole call, not each read
                httpx.AsyncClient(timeout=self.timeout_s, trust_env=False) as client,
            ):
                response = await client.get(self.endpoint, params=params)
        except httpx.HTTPError as exc:
            raise SearchError(f"the search service could not be reached: {exc!r}") from None
        except TimeoutError:
            raise SearchError(f"the search took longer than {self.timeout_s:g} s") from None
        if response.status_code == 403:
            raise SearchError("the search service refused the JSON format (enable it in SearXNG)")
        if response.status_code != 200:
            raise SearchError(f"the search service answered HTTP {response.status_code}")
        try:
            data = response.json()
        except ValueError:
            raise SearchError("the search service did not answer with JSON") from None
        return _hits(data, max_results)


def _hits(data: Any, max_results: int) -> list[SearchHit]:
    results = data.get("results") if isinstance(data, dict) else None
    hits: list[SearchHit] = []
    seen: set[str] = set()
    for result in results if isinstance(results, list) else []:
        if not isinstance(result, dict):
            continue
        url = result.get("url")
        if not isinstance(url, str) or not url or url in seen:
            continue
        seen.add(url)
        title = result.get("title")
        snippet = result.get("content")
        hits.append(
            SearchHit(
                title=title.strip() if isinstance(title, str) else "",
                url=url,
                snippet=" ".join(snippet.split()) if isinstance(snippet, str) else "",
            )
        )
        if len(hits) >= max_results:
            break
    return hits
