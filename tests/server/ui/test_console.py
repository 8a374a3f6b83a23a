"""The session console in a real browser: it lists the key's live sessions with their limits and
use, runs cells in one (streamed output, a traceback for an error), lists its files, and closing a
session there closes it on the server."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.server.helpers import LciServer
from tests.server.ui.conftest import App

pytestmark = [pytest.mark.ui, pytest.mark.slow]


def test_the_console_lists_runs_and_closes_a_session(app: App, server: LciServer) -> None:
    with server.client() as http:
        reply = http.post("/v1/sessions", json={"limits": {"memory_mb": 200}})
        assert reply.status_code == 201, reply.text
        session = reply.json()["id"]
        page = app.open("#sessions")
        expect(page.get_by_role("heading", name="Sessions", exact=True)).to_be_visible()
        row = page.locator(f'tr[data-session="{session}"]')
        expect(row).to_contain_text("subprocess")
        expect(row).to_contain_text("200 MiB")
        expect(row).to_contain_text("idle")

        row.get_by_role("button", name=f"Open session {session}").click()
        code = page.get_by_label("Code", exact=True)
        expect(code).to_be_focused()
        code.fill("x = 6 * 7\nprint('x is', x)\nopen('note.txt', 'w').write('hi')\nx")
        code.press("Control+Enter")
        first = page.locator("#cells .cell").first
        expect(first).to_contain_text("x is 42")
        expect(first.locator(".cell-head")).to_contain_text("In [1]")
        expect(first.locator(".badge")).to_contain_text("completed")
        expect(page.locator("#session-files")).to_contain_text("note.txt")

        code.fill("def half(n):\n    return n / 0\n\nhalf(x)")
        page.get_by_role("button", name="Run").click()
        failed = page.locator("#cells .cell.failed")
        expect(failed).to_contain_text("ZeroDivisionError")
        expect(failed.locator("pre.traceback")).to_contain_text("return n / 0")
        page.locator("#refresh-sessions").click()
        expect(row.locator("td").nth(6)).to_have_text("2")  # executions
        app.screenshot(page, "console.png")

        row.get_by_role("button", name=f"Close session {session}").click()
        expect(row).to_have_count(0)
        expect(page.locator("#notebook")).to_be_hidden()
        assert http.get(f"/v1/sessions/{session}").status_code == 404
