"""Serves the browser app's static files: the page at `/`, its scripts, styles and icon under
`/ui/`. Nothing here reads server state: the page fetches everything through the public APIs, with
the key the user typed in, so the page and its assets are open without a key (`gate.OPEN_PATHS`,
`gate.OPEN_PREFIXES`).

Every response carries a strict Content-Security-Policy: scripts, styles and connections only from
this origin, no inline code, images also as `data:` (figures arrive as data URLs) and `blob:`
(files shown before they are saved). So a figure or a file that the sandbox wrote can never run
script in the page, and the page can send nothing anywhere but this server.
"""

from __future__ import annotations

from importlib.resources import files

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PAGE = "/"
ASSETS = "/ui"

CSP = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cache-control": "no-cache",  # revalidated: an upgraded lci serves its new app at once
}


def static_dir() -> str:
    return str(files("engine.server.ui") / "static")


class _Headed:
    """An ASGI app with HEADERS added to every response it starts."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [
                    (name.encode(), value.encode())
                    for name, value in HEADERS.items()
                    if name.encode() not in present
                ]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, with_headers)


async def _page(request: Request) -> Response:
    return FileResponse(f"{static_dir()}/index.html", media_type="text/html", headers=HEADERS)


def routes() -> tuple[BaseRoute, ...]:
    """The page and the mount of its assets."""
    assets = _Headed(StaticFiles(directory=static_dir()))
    return (
        Route(PAGE, _page, methods=["GET", "HEAD"], include_in_schema=False),
        Mount(ASSETS, app=assets, name="ui-assets"),
    )
