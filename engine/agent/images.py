"""PIL images as displays: a displayed image has a PNG (converted first when PIL's own PNG repr
refuses its mode), and `Image.show()` displays it in the cell's output (a sandbox has no image
viewer to open), as does a cell's `img.save(path)`.

Nothing here imports PIL: the image class is looked up in `sys.modules`, and the `show` hook is
installed by figures.py once user code imports `PIL.Image`.
"""

from __future__ import annotations

import base64
import io
import os
import sys
from collections.abc import Callable
from typing import Any

# Modes PNG holds as they are; any other (F, CMYK, YCbCr, HSV, LAB, ...) is converted first.
_PNG_MODES = frozenset({"1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"})

_shown: list[Any] = []  # images passed to show(), waiting for the publisher
_only_shown = False  # set while show() publishes: figures wait for plt.show() or the cell's end


def is_image(value: Any) -> bool:
    module = sys.modules.get("PIL.Image")
    cls = getattr(module, "Image", None)
    return isinstance(cls, type) and isinstance(value, cls)


def png_base64(image: Any, limit: int) -> str | None:
    """The image as base64 PNG within `limit` characters, or None (too large, or not savable)."""
    try:
        if image.mode not in _PNG_MODES:
            image = image.convert("RGBA" if "A" in image.mode else "RGB")
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
    except Exception:
        return None
    data = buffer.getvalue()
    if len(data) * 4 // 3 > limit:
        return None
    return base64.b64encode(data).decode("ascii")


def take_shown() -> list[Any]:
    """The images passed to show() since the last call, in order."""
    if not _shown:  # every cell asks: the common answer costs nothing
        return []
    shown = list(_shown)
    _shown.clear()
    return shown


def only_shown() -> bool:
    """Whether the publisher runs for show(), which publishes the images it was given only."""
    return _only_shown


def hook_show(publisher: Callable[[], None]) -> Callable[[Any], None]:
    """The function that, given the imported `PIL.Image` module, makes `Image.show()` queue the
    image and call `publisher`, which sends it as a display right away (between the prints
    around it)."""

    def configure(module: Any) -> None:
        cls: Any = getattr(module, "Image", None)
        original = getattr(cls, "show", None)
        if not callable(original) or getattr(original, "_lci_display", False):
            return  # no Image class with a show(), or hooked already

        def show(self: Any, title: str | None = None, **options: Any) -> None:
            global _only_shown
            _shown.append(self)
            _only_shown = True
            try:
                publisher()
            finally:
                _only_shown = False

        show._lci_display = True  # type: ignore[attr-defined]
        cls.show = show
        saver = getattr(cls, "save", None)
        if callable(saver):
            cls.save = _displaying_save(saver, show)

    return configure


def _displaying_save(original: Any, show: Callable[[Any], None]) -> Any:
    """`Image.save` that also shows the image when a cell saves it to a file, as E2B's kernel
    does (models save images and expect to see them). Saves by libraries (matplotlib writing a
    JPEG, the agent's own PNG encoding) and to open file objects show nothing."""

    def save(self: Any, fp: Any, format: str | None = None, **params: Any) -> None:
        original(self, fp, format, **params)
        if isinstance(fp, str | os.PathLike) and sys._getframe(1).f_globals.get("__name__") == (
            "__main__"
        ):
            show(self)

    return save
