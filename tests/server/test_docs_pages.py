"""The documentation pages of a real `lci serve` (Swagger UI at /docs, ReDoc at /redoc) load every
script and style from the server itself, so they work offline; they and their assets are open
without a key, as the OpenAPI document is, and nothing else becomes open."""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from tests.server.helpers import LciServer


class Assets(HTMLParser):
    """The URLs a page loads: `<script src>` and `<link href>`, and any absolute URL in a tag."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str] = []
        self.links: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "script" and found.get("src"):
            self.scripts.append(found["src"] or "")
        if tag == "link" and found.get("href"):
            self.links.append((found.get("rel") or "", found["href"] or ""))


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_their_assets_from_the_server(server: LciServer, page: str) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:  # no key: the pages are open
        reply = client.get(page)
        assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/html")
        html = reply.text
        assert "http://" not in html and "https://" not in html, html
        assets = Assets()
        assets.feed(html)
        assert assets.scripts, html
        wanted = [(src, "javascript") for src in assets.scripts]
        for rel, href in assets.links:
            wanted.append((href, "css" if rel == "stylesheet" else "image"))
        for url, kind in wanted:
            absolute = urljoin(server.url + page, url)
            assert urlsplit(absolute).netloc == urlsplit(server.url).netloc, url
            fetched = client.get(absolute)
            assert fetched.status_code == 200, (url, fetched.status_code)
            assert kind in fetched.headers["content-type"], (url, fetched.headers)
            assert len(fetched.content) > 100
        assert client.get("/openapi.json").status_code == 200  # what the pages then fetch


def test_only_the_docs_assets_are_open(server: LciServer) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.get("/docs/assets/swagger-ui.css").status_code == 200
        assert client.get("/docs/assets/nothing-here.js").status_code == 404
        for closed in ("/docs/assets/../../v1/sessions", "/docs/other", "/v1/sessions"):
            assert client.get(closed).status_code in (401, 404), closed
        assert client.get("/v1/sessions").status_code == 401
        assert client.get("/docs/assets/%2e%2e/%2e%2e/v1/sessions").status_code == 404
