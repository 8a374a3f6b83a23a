"""A fake SearXNG instance and web pages: a real HTTP server on 127.0.0.1.

    GET /search?q=...&format=json  SearXNG's JSON answer: `results[q]` (or `default_results`);
                                   403 without format=json, as SearXNG without the json format
    GET /pages/<name>              `pages[name]`: (content type, body)
    GET /redirect?to=<url>         302 to <url>
    GET /slow                      waits `slow_s` before answering
    GET /huge                      an endless HTML body (until the client goes away)

Every request path is recorded in `paths`.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

ARTICLE = """<!doctype html><html><head><title>Tide tables of Port Example</title></head><body>
<nav><a href="/">Home</a> | <a href="/about">About</a> | <a href="/login">Log in</a></nav>
<article><h1>Tide tables of Port Example</h1>
<p>The harbour of Port Example sees two high tides a day. Records kept since 1901 show that the
highest tide ever measured there reached 417 centimetres, on a stormy night in March 1953.</p>
<p>The average tidal range is 312 centimetres. Ships of deep draught wait for the high tide before
they enter the inner basin, which is dredged to a depth of eleven metres.</p>
<p>The tide gauge stands at the end of the north pier and reports every ten minutes.</p>
</article>
<footer>Copyright Port Example harbour office. Cookie settings.</footer>
</body></html>"""


class FakeWeb:
    def __init__(self) -> None:
        self.results: dict[str, list[dict[str, Any]]] = {}
        self.default_results: list[dict[str, Any]] = []
        self.pages: dict[str, tuple[str, bytes]] = {"article": ("text/html", ARTICLE.encode())}
        self.slow_s = 5.0
        self.json_format = True  # False: /search answers 403 to format=json
        self.paths: list[str] = []
        self.hosts: list[str] = []  # the Host header of each request
        self._lock = threading.Lock()
        self.closing = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.web = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def record(self, path: str, host: str) -> None:
        with self._lock:
            self.paths.append(path)
            self.hosts.append(host)

    def requested(self, prefix: str) -> list[str]:
        with self._lock:
            return [p for p in self.paths if p.startswith(prefix)]

    def close(self) -> None:
        self.closing.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeWeb:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    @property
    def web(self) -> FakeWeb:
        return self.server.web  # type: ignore[attr-defined,no-any-return]

    def do_GET(self) -> None:
        self.web.record(self.path, self.headers.get("Host", ""))
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        if parts.path == "/search":
            if query.get("format") != ["json"] or not self.web.json_format:
                return self._send(403, "text/html", b"<h1>403 Forbidden</h1>")
            q = query.get("q", [""])[0]
            if q == "slow":
                self.web.closing.wait(self.web.slow_s)
            results = self.web.results.get(q, self.web.default_results)
            body = {"query": q, "number_of_results": len(results), "results": results}
            return self._send(200, "application/json", json.dumps(body).encode())
        if parts.path.startswith("/pages/"):
            page = self.web.pages.get(parts.path.removeprefix("/pages/"))
            if page is None:
                return self._send(404, "text/plain", b"not found")
            return self._send(200, page[0], page[1])
        if parts.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", query["to"][0])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        if parts.path == "/slow":
            self.web.closing.wait(self.web.slow_s)
            return self._send(200, "text/plain", b"finally")
        if parts.path == "/huge":
            return self._endless()
        return self._send(404, "text/plain", b"not found")

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _endless(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        chunk = b"<p>" + b"All work and no play makes a dull page. " * 400 + b"</p>\n"
        frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
        try:
            for _ in range(20_000):  # 320 MB, far beyond any cap a test sets
                if self.web.closing.is_set():
                    return
                self.wfile.write(frame)
            self.wfile.write(b"0\r\n\r\n")
        except OSError:  # the client stopped reading: as it should
            return


def hit(title: str, url: str, content: str) -> dict[str, Any]:
    """One result as SearXNG's JSON lists it."""
    return {"title": title, "url": url, "content": content, "engine": "fake", "score": 1.0}
