"""matplotlib in the sandbox: the agent's backend selected on first import, CJK font fallback."""

from __future__ import annotations

import sys
import types
from typing import Any

_MPL_BACKEND = f"module://{__package__}.mpl_backend"
_CJK_FONTS = ("Noto Sans CJK SC", "Noto Sans CJK JP", "WenQuanYi Zen Hei", "Droid Sans Fallback")


def install_matplotlib_hook(publisher: Any) -> None:
    """Select the sandbox backend when matplotlib is (or gets) imported, without importing it now:
    importing matplotlib costs a third of a second that most cells never need."""

    def configure(mpl: Any) -> None:
        try:
            from . import mpl_backend

            mpl_backend.publisher = publisher
            mpl.use(_MPL_BACKEND)
            # Fall back to CJK fonts where installed, so plots can be labelled in any language.
            fonts = mpl.rcParams["font.sans-serif"]
            mpl.rcParams["font.sans-serif"] = [*fonts, *_CJK_FONTS]
        except Exception:
            pass

    if "matplotlib" in sys.modules:
        configure(sys.modules["matplotlib"])
        return

    import importlib.abc
    import importlib.util

    class Hook(importlib.abc.MetaPathFinder):
        def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
            if name != "matplotlib":
                return None
            sys.meta_path.remove(self)
            spec = importlib.util.find_spec(name)
            if spec is None or spec.loader is None:
                return spec
            original = spec.loader.exec_module

            def exec_module(module: types.ModuleType) -> None:
                original(module)
                configure(module)

            spec.loader.exec_module = exec_module  # type: ignore[method-assign]
            return spec

    sys.meta_path.insert(0, Hook())
