"""Page extraction: fetch a URL over HTTP(S) within limits, and keep its main text.

The fetch goes through the address guard on every hop: redirects are not followed by the client but
checked and followed here, up to `max_redirects`; each connection goes to the address the guard
checked (the host name travels in the Host header and as the TLS server name, so certificates are
still verified against it). The body is streamed and cut at `max_bytes`; the whole fetch, redirects
included, must finish within `timeout_s`. Proxy variables of the environment are ignored: a proxy
would connect wherever it likes.

HTML goes through trafilatura, a maintained main-content extractor (menus, footers and scripts
dropped); plain text, Markdown, CSV and JSON are kept as they
are; anything else (PDF, images, archives) is refused with a note.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from urllib.parse import urljoin

import httpx
import trafilatura

from engine.orchestrator.web.url_guard import AddressGuard, Target

_REDIRECTS = {301, 302, 303, 307, 308}
_HTML = ("text/html", "application/xhtml+xml")
_TEXT = ("text/", "application/json", "application/xml", "application/ld+json")
_USER_AGENT = "lci-web-extractor/1 (+https://github.com/)"


class FetchError(Exception):
    """The page could not be fetched or read; the message is shown to the model."""


@dataclass(frozen=True)
class FetchLimits:
    timeout_s: float = 15.0
    max_bytes: int = 2 << 20
    max_redirects: int = 5


@dataclass
class Page:
    url: str  # where the page was found, after redirects
    title: str | None
    text: str
    content_type: str
    truncated: bool  # the body was cut at max_bytes


class PageFetcher:
    def __init__(self, guard: AddressGuard, limits: FetchLimits | None = None) -> None:
        self.guard = guard
        self.limits = limits or FetchLimits()

    async def extract(self, url: str) -> Page:
        """The page at `url`, its main text extracted. Raises Refused or FetchError."""
        try:
            async with asyncio.timeout(self.limits.timeout_s):
                final, content_type, body, truncated = await self._fetch(url)
        except TimeoutError:
            raise FetchError(
                f"fetching {url} took longer than {self.limits.timeout_s:g} s"
            ) from None
        title, text = await asyncio.to_thread(_main_text, final, content_type, body)
        return Page(final, title, text, content_type, truncated)

    async def _fetch(self, url: str) -> tuple[str, str, bytes, bool]:
        # No pooled connections: a kept TLS connection to an address would be reused for another
        # host name at the same address without its own certificate check.
        limits = httpx.Limits(max_keepalive_connections=0)
        timeout = httpx.Timeout(self.limits.timeout_s)
        async with httpx.AsyncClient(
            follow_redirects=False, trust_env=False, limits=limits, timeout=timeout
        ) as client:
            for _ in range(self.limits.max_redirects + 1):
                target = await self.guard.check(url)
                request = _pinned(client, target)
                try:
                    response = await client.send(request, stream=True)
                except httpx.HTTPError as exc:
                    raise FetchError(f"could not fetch {url}: {exc!r}") from None
                try:
                    location = response.headers.get("location")
                    if response.status_code in _REDIRECTS and location:
                        url = urljoin(url, location)
                        continue
                    if response.status_code >= 400:
                        raise FetchError(f"{url} answered HTTP {response.status_code}")
                    body, truncated = await self._read(response)
                    return url, _media_type(response), body, truncated
                finally:
                    await response.aclose()
        raise FetchError(f"more than {self.limits.max_redirects} redirects from {url}")

    async def _read(self, response: httpx.Response) -> tuple[bytes, bool]:
        cap = self.limits.max_bytes
        chunks: list[bytes] = []
        size = 0
        try:
            # Decoded bytes: a compressed body (sent although identity was asked for) is capped
            # at what it expands to.
            async for chunk in response.aiter_bytes():
                chunks.append(chunk)
                size += len(chunk)
                if size >= cap:
                    return b"".join(chunks)[:cap], True
        except httpx.HTTPError as exc:
            raise FetchError(f"reading {response.request.url} failed: {exc!r}") from None
        return b"".join(chunks), False


def _pinned(client: httpx.AsyncClient, target: Target) -> httpx.Request:
    """The GET request for `target`, sent to its checked address."""
    url = httpx.URL(target.url)
    headers = {"User-Agent": _USER_AGENT, "Accept": "text/html,text/plain;q=0.9,*/*;q=0.5"}
    extensions: dict[str, str] = {}
    if target.address is not None:
        default = 443 if target.scheme == "https" else 80
        headers["Host"] = target.host if target.port == default else f"{target.host}:{target.port}"
        if target.scheme == "https":
            extensions["sni_hostname"] = target.host
        url = url.copy_with(host=str(target.address))
    # Compressed bodies are not asked for: the byte cap applies to what arrives on the wire.
    headers["Accept-Encoding"] = "identity"
    return client.build_request("GET", url, headers=headers, extensions=extensions)


def _media_type(response: httpx.Response) -> str:
    value = str(response.headers.get("content-type", ""))
    return value.split(";", maxsplit=1)[0].strip().lower()


def _decode(body: bytes) -> str:
    for encoding in ("utf-8", "cp1252"):
        try:
            return body.decode(encoding)
        except UnicodeDecodeError:
            continue
    return body.decode("latin-1")


def _main_text(url: str, content_type: str, body: bytes) -> tuple[str | None, str]:
    """(title, text) of a fetched body."""
    sniffed_html = not content_type and body.lstrip()[:1] == b"<"
    if content_type in _HTML or sniffed_html:
        document = trafilatura.bare_extraction(
            body, url=url, with_metadata=True, favor_recall=True, include_tables=True
        )
        if document is None:
            return None, ""
        title, text = getattr(document, "title", None), getattr(document, "text", None)
        return (title if isinstance(title, str) else None), (text if isinstance(text, str) else "")
    if not content_type or content_type.startswith(_TEXT):
        return None, _decode(body)
    raise FetchError(f"{url} is {content_type}: only web pages and text can be read")
