"""IPython's display system taught the agent's rich forms, so `display(...)` through IPython gives
what the agent's own display gives: a DataFrame's table as `e2b/data` (tables.py), and a PNG for
a PIL image whose mode PIL's own PNG repr refuses (images.py).

`install` takes IPython's `DisplayFormatter` (`shell.display_formatter`) and adds formatters to
it; nothing here imports IPython. A formatter is anything callable with an `enabled` flag:
IPython calls each for every displayed object and keeps what is not None.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import images, tables


class _TableFormatter:
    enabled = True

    def __init__(self, text_limit: Callable[[], int]) -> None:
        self._text_limit = text_limit

    def __call__(self, obj: Any) -> str | None:
        # A JSON string within the text limit: the host must never cut it (cut JSON is no JSON).
        return tables.dataframe_data(obj, self._text_limit())


class _PngFormatter:
    """IPython's PNG formatter, then a converted PNG for a PIL image it gave none for."""

    def __init__(self, original: Any, limit: Callable[[], int]) -> None:
        self._original = original
        self._limit = limit

    @property
    def enabled(self) -> bool:
        return bool(getattr(self._original, "enabled", True))

    def __call__(self, obj: Any) -> Any:
        data = self._original(obj) if self._original is not None else None
        if data is None and images.is_image(obj):
            return images.png_base64(obj, self._limit())
        return data

    def __getattr__(self, name: str) -> Any:  # for_type, type_printers ...: IPython's own
        return getattr(self._original, name)


def install(
    display_formatter: Any, text_limit: Callable[[], int], display_limit: Callable[[], int]
) -> None:
    """Add the agent's forms to IPython's `display_formatter`. The limits are read at each call
    (they come with each cell's request)."""
    formatters = display_formatter.formatters
    if isinstance(formatters.get(tables.MIME), _TableFormatter):
        return  # installed already
    formatters[tables.MIME] = _TableFormatter(text_limit)
    formatters["image/png"] = _PngFormatter(formatters.get("image/png"), display_limit)
