"""Rich display: turn Python values into MIME bundles, and matplotlib figures into PNG images.

Everything here runs inside the sandbox under its limits; a `__repr__` that raises or returns something
odd produces a note, never a broken agent.
"""

from __future__ import annotations

import base64
import contextlib
import io
import sys
from typing import Any

# (method, mime type, is binary)
_REPR_METHODS = (
    ("_repr_html_", "text/html", False),
    ("_repr_markdown_", "text/markdown", False),
    ("_repr_svg_", "image/svg+xml", False),
    ("_repr_latex_", "text/latex", False),
    ("_repr_json_", "application/json", False),
    ("_repr_png_", "image/png", True),
    ("_repr_jpeg_", "image/jpeg", True),
)


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"... [{len(text) - limit} characters not shown]"


def plain_text(value: Any, limit: int) -> str:
    try:
        text = repr(value)
    except Exception as exc:  # a broken __repr__ is the user's problem, not the agent's
        return f"<repr of {type(value).__name__} object failed: {type(exc).__name__}: {exc}>"
    if not isinstance(text, str):
        return f"<repr of {type(value).__name__} object returned {type(text).__name__}>"
    return _clip(text, limit)


def _encode_rich(raw: Any, binary: bool, limit: int) -> str | None:
    if raw is None:
        return None
    if isinstance(raw, tuple):  # (data, metadata) form
        raw = raw[0]
    if binary:
        if isinstance(raw, str):  # already base64
            return raw if len(raw) <= limit else None
        if isinstance(raw, bytes | bytearray) and len(raw) * 4 // 3 <= limit:
            return base64.b64encode(raw).decode("ascii")
        return None
    if isinstance(raw, str):
        return _clip(raw, limit)
    if isinstance(raw, dict | list):
        import json

        try:
            return _clip(json.dumps(raw), limit)
        except (TypeError, ValueError):
            return None
    return None


_PLAIN_TYPES = frozenset(
    {int, float, complex, str, bytes, bool, list, tuple, dict, set, frozenset, range, type(None)}
)


def mime_bundle(value: Any, limit: int) -> dict[str, str]:
    """text/plain always, plus whatever rich forms the object offers (IPython's `_repr_*_` protocol)."""
    if type(value) in _PLAIN_TYPES:  # the common case: no rich forms to look for
        return {"text/plain": plain_text(value, limit)}
    bundle: dict[str, str] = {}
    mimebundle = getattr(value, "_repr_mimebundle_", None) if not isinstance(value, type) else None
    if callable(mimebundle):
        try:
            produced = mimebundle()
            if isinstance(produced, tuple):
                produced = produced[0]
            if isinstance(produced, dict):
                for mime, raw in produced.items():
                    binary = mime.startswith("image/") and mime != "image/svg+xml"
                    encoded = _encode_rich(raw, binary, limit)
                    if isinstance(mime, str) and encoded is not None:
                        bundle[mime] = encoded
        except Exception:
            pass
    if not isinstance(value, type):
        for method, mime, binary in _REPR_METHODS:
            if mime in bundle:
                continue
            func = getattr(value, method, None)
            if not callable(func):
                continue
            try:
                encoded = _encode_rich(func(), binary, limit)
            except Exception:
                continue
            if encoded is not None:
                bundle[mime] = encoded
    bundle["text/plain"] = plain_text(value, limit)
    return bundle


def figure_bundles(limit: int) -> list[dict[str, str]]:
    """PNG bundles of every open matplotlib figure, which are then closed (notebook semantics)."""
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is None:
        return []
    bundles = []
    try:
        numbers = pyplot.get_fignums()
    except Exception:
        return []
    for number in numbers:
        try:
            figure = pyplot.figure(number)
            buffer = io.BytesIO()
            figure.savefig(buffer, format="png", bbox_inches="tight")
            png = base64.b64encode(buffer.getvalue()).decode("ascii")
            text = plain_text(figure, 200)
        except Exception as exc:
            bundles.append({"text/plain": f"<figure {number} could not be rendered: {exc!r}>"})
            continue
        if len(png) <= limit:
            bundles.append({"image/png": png, "text/plain": text})
        else:
            bundles.append({"text/plain": f"{text} [PNG of {len(png)} bytes over the limit]"})
    with contextlib.suppress(Exception):
        pyplot.close("all")
    return bundles


def plain_text_of_exception(exc: BaseException, limit: int = 65536) -> str:
    try:
        text = str(exc)
    except Exception:
        return f"<str() of {type(exc).__name__} failed>"
    return _clip(text, limit) if isinstance(text, str) else ""
