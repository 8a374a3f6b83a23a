"""The browser app's files as served: open without a key (they hold no data) under a strict
Content-Security-Policy, with no inline script or style and nothing loaded from elsewhere; only
`/` and `/ui/...` are opened; `--ui off` and LCI_SERVER_UI=0 take them away; and the wheel ships
every file."""

from __future__ import annotations

import re
import tomllib
from fnmatch import fnmatch
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from engine.server.ui.pages import CSP
from tests.server.helpers import REPO, FakeModel, LciServer

pytestmark = pytest.mark.ui

STATIC = REPO / "engine" / "server" / "ui" / "static"


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, dict(attrs)))


def test_the_policy_is_strict() -> None:
    rules = dict(rule.split(" ", 1) for rule in CSP.split("; "))
    assert rules["default-src"] == "'self'"
    assert rules["script-src"] == "'self'" and rules["style-src"] == "'self'"
    assert rules["connect-src"] == "'self'" and rules["object-src"] == "'none'"
    assert "unsafe" not in CSP and "*" not in CSP and "http" not in CSP


def test_the_page_has_no_inline_code() -> None:
    tags = Tags()
    tags.feed((STATIC / "index.html").read_text())
    assert tags.found
    for tag, attrs in tags.found:
        assert tag != "style", "an inline style sheet"
        assert "style" not in attrs, (tag, attrs)
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
        if tag == "script":
            assert attrs.get("src", "").startswith("/ui/"), attrs
    for script in STATIC.glob("*.js"):
        text = script.read_text()
        # What the model or the sandbox wrote is set as text, never parsed as markup.
        assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|eval\(|new Function", text)
        assert not re.search(r"https?://", text), script.name


def test_page_and_assets_are_open_and_carry_the_policy(server: LciServer) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:  # no key
        page = client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert page.headers["content-security-policy"] == CSP
        assert page.headers["x-content-type-options"] == "nosniff"
        assert "http://" not in page.text and "https://" not in page.text
        kinds = {".js": "javascript", ".css": "text/css", ".svg": "image/svg+xml"}
        for asset in sorted(STATIC.iterdir()):
            if asset.suffix not in kinds:
                continue
            reply = client.get(f"/ui/{asset.name}")
            assert reply.status_code == 200, asset.name
            assert kinds[asset.suffix] in reply.headers["content-type"], reply.headers
            assert reply.headers["content-security-policy"] == CSP
            assert reply.content == asset.read_bytes()


def test_nothing_else_is_opened(server: LciServer) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.get("/ui/nothing-here.js").status_code == 404
        for closed in ("/v1/sessions", "/index.html", "/ui", "/v1/containers", "/metrics"):
            assert client.get(closed).status_code == 401, closed
        # A path that climbs out of /ui/ reaches nothing (the files app refuses it).
        raw = httpx.Request("GET", server.url + "/ui/%2e%2e/%2e%2e/v1/sessions")
        assert client.send(raw).status_code in (401, 404)
        assert client.post("/", content=b"x").status_code in (401, 405)


@pytest.mark.slow
@pytest.mark.parametrize("switch", [{"args": ["--ui", "off"]}, {"env": {"LCI_SERVER_UI": "0"}}])
def test_the_app_can_be_switched_off(shared_fake: FakeModel, switch: dict[str, object]) -> None:
    with LciServer(shared_fake.base_url, **switch) as server:  # type: ignore[arg-type]
        assert httpx.get(server.url + "/", timeout=30).status_code == 404
        assert httpx.get(server.url + "/ui/app.js", timeout=30).status_code == 404
        assert httpx.get(server.url + "/health", timeout=30).status_code == 200


def test_the_package_ships_every_file() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["engine.server.ui"]
    package = STATIC.parent
    for path in STATIC.rglob("*"):
        if path.is_file():
            relative = path.relative_to(package).as_posix()
            assert any(fnmatch(relative, p) for p in patterns), relative
    assert {p.name for p in STATIC.iterdir()} >= {"index.html", "app.js", "style.css"}


def test_every_module_the_page_imports_is_there() -> None:
    for script in STATIC.glob("*.js"):
        for name in re.findall(r'from "\./([\w-]+\.js)"', script.read_text()):
            assert (STATIC / name).is_file(), (script.name, name)
    assert Path(STATIC / "icon.svg").is_file()
