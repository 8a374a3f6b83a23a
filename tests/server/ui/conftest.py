"""Fixtures of the browser app's tests: the system's Chromium driven by Playwright (no browser is
downloaded: Debian's `chromium` package, or the binary LCI_TEST_CHROMIUM names), and a page of the
shared `lci serve` that records every request it makes.

Every test's page is checked at the end: no request left the server's host (data: and blob: URLs
stay in the page), and the page raised no script error and logged no console error other than
the 401s of a request made without a key (a Content-Security-Policy violation is a console error).

With LCI_UPDATE_SCREENSHOTS=1 the tests save their screenshots to docs/images/.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    expect,
    sync_playwright,
)

from tests.server.conftest import API_KEY
from tests.server.helpers import REPO, LciServer

VIEWPORT = {"width": 1280, "height": 860}
SCREENSHOTS = REPO / "docs" / "images"


def chromium_path() -> str | None:
    given = os.environ.get("LCI_TEST_CHROMIUM")
    if given:
        return given
    return next((p for n in ("chromium", "chromium-browser") if (p := shutil.which(n))), None)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    path = chromium_path()
    if path is None:
        reason = "no chromium on PATH (apt-get install chromium, or set LCI_TEST_CHROMIUM)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    with sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where Chromium's own sandbox cannot start.
        launched = playwright.chromium.launch(
            executable_path=path, headless=True, args=["--no-sandbox"]
        )
        try:
            yield launched
        finally:
            launched.close()


@dataclass
class App:
    """A browser context on one server, recording what its pages request."""

    server: LciServer
    context: BrowserContext
    requests: list[str] = field(default_factory=list)
    responses: list[tuple[str, int]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def page(self, fragment: str = "") -> Page:
        """A new page at `/`, not let in yet (the key prompt shows when the server has keys)."""
        page = self.context.new_page()
        page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        page.on("console", self._console)
        page.goto(self.server.url + "/" + fragment)
        return page

    def open(self, fragment: str = "") -> Page:
        """A new page, let in with the server's key, showing the view `fragment` names."""
        page = self.page(fragment)
        page.get_by_label("API key", exact=True).fill(self.server.api_key or "")
        page.get_by_role("button", name="Use this key").click()
        expect(page.get_by_role("button", name="Forget key")).to_be_visible()
        return page

    def screenshot(self, page: Page, name: str) -> None:
        if os.environ.get("LCI_UPDATE_SCREENSHOTS") == "1":
            page.evaluate("window.scrollTo(0, 0)")  # the side panels where a reader sees them
            page.screenshot(path=str(SCREENSHOTS / name), full_page=True)

    def off_host(self) -> list[str]:
        host = urlsplit(self.server.url).netloc
        return [
            url
            for url in self.requests
            if urlsplit(url).scheme not in ("data", "blob") and urlsplit(url).netloc != host
        ]

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error" and "status of 401" not in message.text:
            self.problems.append(f"console: {message.text}")


@contextlib.contextmanager
def recording(browser: Browser, server: LciServer) -> Iterator[App]:
    """An App on `server`, checked when it closes (see the module's docstring)."""
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    context.set_default_timeout(30_000)
    recorded = App(server, context)
    context.on("request", lambda request: recorded.requests.append(request.url))
    context.on("response", lambda r: recorded.responses.append((r.url, r.status)))
    try:
        yield recorded
    finally:
        context.close()
    assert recorded.requests, "the page made no request at all"
    assert not recorded.off_host(), f"requests off the host: {recorded.off_host()}"
    assert not recorded.problems, "\n".join(recorded.problems)


@pytest.fixture
def app(browser: Browser, server: LciServer) -> Iterator[App]:
    """The app on the shared server (which has a key) and its scripted model."""
    assert server.api_key == API_KEY
    with recording(browser, server) as recorded:
        yield recorded
