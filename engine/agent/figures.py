"""matplotlib in the sandbox: the agent's backend selected on first import, a CJK font fallback.

Models label charts in Chinese and Japanese; DejaVu Sans, matplotlib's default, has no CJK glyphs,
so the first CJK-capable font installed is added to `font.family` (matplotlib falls back glyph by
glyph across that list only). Without one, CJK text renders as boxes: the first missing-glyph
warning of the session then says so, with what to install, and later ones are not repeated in
every cell's output."""

from __future__ import annotations

import contextlib
import os
import sys
import types
import warnings
from collections.abc import Callable
from typing import Any

from . import images

_MPL_BACKEND = f"module://{__package__}.mpl_backend"
# Best first: wide coverage (CJK plus Latin), then any CJK face.
_CJK_FONTS = (
    "WenQuanYi Micro Hei",
    "WenQuanYi Zen Hei",
    "Noto Sans CJK SC",
    "Noto Sans CJK JP",
    "Noto Sans CJK TC",
    "Noto Sans CJK KR",
    "Source Han Sans SC",
    "Source Han Sans",
    "Droid Sans Fallback",
    "AR PL UMing CN",
    "IPAexGothic",
    "IPAGothic",
    "Unifont",
)
_FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts")
_FILE_HINTS = ("wqy", "cjk", "droidsansfallback", "sourcehan", "uming", "ukai", "ipa", "unifont")
MISSING_GLYPHS = (
    "some characters have no glyph in the figure's fonts and show as boxes"
    "{hint} (further missing-glyph warnings of this session are not shown)"
)
_NO_CJK_HINT = (
    "; no CJK font is installed: install one (e.g. `apt-get install fonts-wqy-microhei`) "
    "for Chinese, Japanese or Korean text"
)


def cjk_font(font_manager: Any) -> str | None:
    """The name of an installed CJK-capable font, registering font files matplotlib's cached
    font list does not know yet (installed after the cache was built)."""
    known = {entry.name for entry in font_manager.fontManager.ttflist}
    for name in _CJK_FONTS:
        if name in known:
            return name
    for directory in _FONT_DIRS:
        for root, _, files in os.walk(directory):
            for file in files:
                lowered = file.lower()
                if lowered.endswith((".ttf", ".ttc", ".otf")) and any(
                    hint in lowered for hint in _FILE_HINTS
                ):
                    try:
                        font_manager.fontManager.addfont(os.path.join(root, file))
                    except Exception:
                        continue
    known = {entry.name for entry in font_manager.fontManager.ttflist}
    return next((name for name in _CJK_FONTS if name in known), None)


def _warn_missing_glyphs_once(cjk: str | None) -> None:
    original = warnings.showwarning
    told = False

    def showwarning(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: Any = None,
        line: str | None = None,
    ) -> None:
        nonlocal told
        text = str(message)
        if text.startswith("Glyph ") and "missing from" in text:
            if told:
                return
            told = True
            hint = "" if cjk else _NO_CJK_HINT
            message = MISSING_GLYPHS.format(hint=hint)
        original(message, category, filename, lineno, file, line)

    warnings.showwarning = showwarning


def install_matplotlib_hook(publisher: Any) -> None:
    """Select the sandbox backend when matplotlib is (or gets) imported, and make PIL's
    `Image.show()` publish the image when `PIL.Image` is, without importing either now: importing
    matplotlib costs a third of a second that most cells never need. `publisher` sends the
    pending displays (display.figure_bundles)."""

    def configure(mpl: Any) -> None:
        cjk = None
        try:
            from . import mpl_backend

            mpl_backend.publisher = publisher
            mpl.use(_MPL_BACKEND)
            import importlib

            cjk = cjk_font(importlib.import_module("matplotlib.font_manager"))
            family = list(mpl.rcParams["font.family"])
            if cjk is not None and cjk not in family:
                mpl.rcParams["font.family"] = [*family, cjk]
        except Exception:
            pass
        _warn_missing_glyphs_once(cjk)

    when_imported("matplotlib", configure)
    when_imported("PIL.Image", images.hook_show(publisher))


def when_imported(name: str, configure: Callable[[types.ModuleType], None]) -> None:
    """Call `configure(module)` once module `name` is imported: now if it already is, else right
    after its first import has run (an import hook that removes itself)."""
    if name in sys.modules:
        with contextlib.suppress(Exception):
            configure(sys.modules[name])
        return

    import importlib.abc
    import importlib.util

    class Hook(importlib.abc.MetaPathFinder):
        def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
            if fullname != name:
                return None
            sys.meta_path.remove(self)
            spec = importlib.util.find_spec(fullname)
            if spec is None or spec.loader is None:
                return spec
            original = spec.loader.exec_module

            def exec_module(module: types.ModuleType) -> None:
                original(module)
                with contextlib.suppress(Exception):
                    configure(module)

            spec.loader.exec_module = exec_module  # type: ignore[method-assign]
            return spec

    sys.meta_path.insert(0, Hook())
