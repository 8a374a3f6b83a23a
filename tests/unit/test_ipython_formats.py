"""IPython's display system with the agent's forms added (engine/agent/ipython_formats.py): a
real `DisplayFormatter` gives a DataFrame's table and a PNG for any PIL image."""

from __future__ import annotations

import base64
import json

import pandas as pd
from IPython.core.formatters import DisplayFormatter
from PIL import Image

from engine.agent import ipython_formats


def formatter(text_limit: int = 1 << 20) -> DisplayFormatter:
    display_formatter = DisplayFormatter()
    ipython_formats.install(display_formatter, lambda: text_limit, lambda: 1 << 24)
    ipython_formats.install(display_formatter, lambda: text_limit, lambda: 1 << 24)  # once only
    return display_formatter


def test_a_dataframe_gets_its_table_within_the_text_limit() -> None:
    frame = pd.DataFrame({"n": [1, 2], "s": ["a", None]})
    data, _ = formatter().format(frame)
    assert json.loads(data["e2b/data"]) == {"n": [1, 2], "s": ["a", None]}
    assert "text/html" in data and "text/plain" in data
    data, _ = formatter(text_limit=8).format(frame)
    assert "e2b/data" not in data and "text/html" in data
    assert "e2b/data" not in formatter().format(pd.Series([1]))[0]


def test_every_pil_image_gets_a_png() -> None:
    data, _ = formatter().format(Image.new("F", (2, 2)))  # PIL's own PNG repr refuses floats
    assert base64.b64decode(data["image/png"]).startswith(b"\x89PNG")
    data, _ = formatter().format(Image.new("RGB", (2, 2)))
    assert data["image/png"].startswith(b"\x89PNG")  # PIL's own, untouched
    assert formatter().format(3)[0] == {"text/plain": "3"}
