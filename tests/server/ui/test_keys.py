"""With keys set, the browser app loads no data without one: the page and its assets are open (they
hold nothing), the page asks for a key, every API call it made without one was refused, a wrong
key is refused, and the right one is kept only in the tab's sessionStorage."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from tests.server.conftest import API_KEY
from tests.server.ui.conftest import App

pytestmark = [pytest.mark.ui, pytest.mark.slow]


def test_without_a_key_the_page_asks_for_one_and_loads_no_data(app: App) -> None:
    page = app.page("#sessions")
    expect(page.get_by_label("API key", exact=True)).to_be_visible()
    expect(page.get_by_label("API key", exact=True)).to_be_focused()
    expect(page.locator("#playground-view")).to_be_hidden()
    expect(page.locator("#sessions-view")).to_be_hidden()
    api = [(u, s) for u, s in app.responses if urlsplit(u).path.startswith("/v1/")]
    assert api, app.responses
    assert all(status == 401 for _, status in api), api
    opened = {urlsplit(u).path for u, s in app.responses if s == 200}
    assert all(p == "/" or p.startswith("/ui/") for p in opened), opened  # the app's files only

    page.get_by_label("API key", exact=True).fill("not-the-key")
    page.get_by_label("API key", exact=True).press("Enter")
    expect(page.get_by_role("alert")).to_have_text("The server refused that key.")
    assert page.evaluate("sessionStorage.getItem('lci.key')") is None

    page.get_by_label("API key", exact=True).fill(API_KEY)
    page.get_by_role("button", name="Use this key").click()
    expect(page.locator("#sessions-view")).to_be_visible()  # the view the URL asked for
    assert page.evaluate("sessionStorage.getItem('lci.key')") == API_KEY
    assert page.evaluate("localStorage.length") == 0
    assert app.context.cookies() == []

    page.get_by_role("button", name="Forget key").click()
    expect(page.get_by_label("API key", exact=True)).to_be_visible()
    expect(page.locator("#sessions-view")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('lci.key')") is None
