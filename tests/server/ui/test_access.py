"""Accessibility of the browser app: every control has a name, focus is drawn, the app works
from the keyboard alone, and the colours of text keep a contrast of 4.5:1 (3:1 for the focus
ring), in the light and the dark scheme."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.server.helpers import REPO
from tests.server.ui.conftest import App

pytestmark = pytest.mark.ui

STYLE = (REPO / "engine" / "server" / "ui" / "static" / "style.css").read_text()
# (foreground, background, least contrast) of the pairs the style sheet puts together.
PAIRS = [
    ("text", "bg", 4.5),
    ("text", "panel", 4.5),
    ("text", "code-bg", 4.5),
    ("muted", "bg", 4.5),
    ("muted", "panel", 4.5),
    ("muted", "code-bg", 4.5),
    ("accent", "panel", 4.5),
    ("accent-text", "accent", 4.5),
    ("danger", "panel", 4.5),
    ("danger", "code-bg", 4.5),
    ("focus", "bg", 3.0),
    ("focus", "panel", 3.0),
]


def palettes() -> dict[str, dict[str, str]]:
    light, dark = re.findall(r":root \{(.*?)\}", STYLE, flags=re.S)[:2]
    return {
        name: dict(re.findall(r"--([\w-]+):\s*(#[0-9a-fA-F]{6})", block))
        for name, block in (("light", light), ("dark", dark))
    }


def luminance(colour: str) -> float:
    channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_colours_keep_their_contrast(scheme: str) -> None:
    colours = palettes()[scheme]
    for fore, back, least in PAIRS:
        ratio = contrast(colours[fore], colours[back])
        assert ratio >= least, f"{scheme}: --{fore} on --{back} is {ratio:.2f}:1"


NAMELESS = """() => [...document.querySelectorAll('input, textarea, select, button, a[href]')]
  .filter(e => {
    const labelled = (e.labels && e.labels.length) || e.getAttribute('aria-label')
      || e.getAttribute('aria-labelledby');
    const text = (e.textContent || '').trim();
    return !(labelled || ((e.tagName === 'BUTTON' || e.tagName === 'A') && text));
  })
  .map(e => e.outerHTML)"""


def test_controls_are_named_and_focus_is_drawn(app: App) -> None:
    page = app.open()
    assert page.evaluate(NAMELESS) == []
    page.get_by_label("Message", exact=True).focus()
    page.keyboard.press("Shift+Tab")  # to a focused control by keyboard: :focus-visible applies
    page.keyboard.press("Tab")
    outline = page.evaluate(
        "() => { const s = getComputedStyle(document.activeElement);"
        " return [s.outlineStyle, parseFloat(s.outlineWidth)]; }"
    )
    assert outline[0] != "none" and outline[1] >= 2, outline


def test_the_views_are_reached_by_keyboard(app: App) -> None:
    page = app.open()
    expect(page.locator("main")).to_be_focused()  # once the key is taken, on at the content
    page.reload()  # the key is kept for the tab: straight in, and Tab starts at the top
    expect(page.get_by_label("Message", exact=True)).to_be_visible()
    page.keyboard.press("Tab")  # the skip link comes first
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Playground")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Sessions")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Sessions", exact=True)).to_be_visible()
    expect(page.get_by_role("link", name="Sessions")).to_have_attribute("aria-current", "page")
    expect(page.locator("main")).to_be_focused()  # reading starts at the view
