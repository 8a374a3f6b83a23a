"""Rich display: turn Python values into MIME bundles, and matplotlib figures into PNG images
with their charts. A DataFrame's bundle also holds its table as JSON (`e2b/data`, tables.py), a
figure's its chart (`e2b/chart`, charts.py), a PIL image's its PNG (images.py).

Everything here runs inside the sandbox under its limits; a `__repr__` that raises or returns something
odd produces a note, never a broken agent.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import sys
from typing import Any

from . import charts, images, tables

CHART_MIME = "e2b/chart"
DATA_MIME = tables.MIME

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


class Clipper:
    """Cuts texts to a byte budget the way the host cuts output: head and tail kept, a marker
    where bytes went, and a count of what was cut (so the host can say `truncated`)."""

    def __init__(self) -> None:
        self.omitted = 0

    def __call__(self, text: str, limit: int) -> str:
        if len(text) <= limit // 4 or (text.isascii() and len(text) <= limit):
            return text  # cheap: fits whatever its characters' sizes
        data = text.encode("utf-8", "surrogatepass")
        if len(data) <= limit:
            return text
        marker_room = 64
        half = max(limit - marker_room, 0) // 2
        head = data[:half].decode("utf-8", "ignore")
        tail = data[len(data) - half :].decode("utf-8", "ignore") if half else ""
        cut = (
            len(data)
            - len(head.encode("utf-8", "surrogatepass"))
            - len(tail.encode("utf-8", "surrogatepass"))
        )
        self.omitted += cut
        return f"{head}\n[... {cut} bytes of output omitted ...]\n{tail}"


_clip = Clipper()  # for callers that need no count


def plain_text(value: Any, limit: int, clip: Clipper = _clip, strict: bool = False) -> str:
    """repr(value) within `limit` bytes. A failing repr is a note, or with `strict` an exception
    (the value of a cell is reported as its error, as in IPython)."""
    try:
        text = repr(value)
    except Exception as exc:  # a broken __repr__ is the user's problem, not the agent's
        if strict:
            raise
        return f"<repr of {type(value).__name__} object failed: {type(exc).__name__}: {exc}>"
    if not isinstance(text, str):
        if strict:
            raise TypeError(f"__repr__ returned non-string (type {type(text).__name__})")
        return f"<repr of {type(value).__name__} object returned {type(text).__name__}>"
    return clip(text, limit)


def _encode_rich(raw: Any, binary: bool, limit: int, clip: Clipper) -> str | None:
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
        return clip(raw, limit)
    if isinstance(raw, dict | list):
        try:
            return clip(json.dumps(raw), limit)
        except (TypeError, ValueError):
            return None
    return None


PLAIN_TYPES = frozenset(
    {int, float, complex, str, bytes, bool, list, tuple, dict, set, frozenset, range, type(None)}
)


def mime_bundle(
    value: Any,
    limit: int,
    text_limit: int | None = None,
    clip: Clipper = _clip,
    strict: bool = False,
) -> dict[str, str]:
    """text/plain always, plus whatever rich forms the object offers (IPython's `_repr_*_` protocol).
    Texts are cut to `text_limit` bytes (head and tail); binary forms over `limit` are left out, and
    rich forms stop being added once the bundle holds `limit` bytes."""
    text_limit = limit if text_limit is None else min(text_limit, limit)
    if type(value) in PLAIN_TYPES:  # the common case: no rich forms to look for
        return {"text/plain": plain_text(value, text_limit, clip, strict)}
    bundle: dict[str, str] = {}
    mimebundle = getattr(value, "_repr_mimebundle_", None) if not isinstance(value, type) else None
    if callable(mimebundle):
        try:
            produced = mimebundle()
            if isinstance(produced, tuple):
                produced = produced[0]
            if isinstance(produced, dict):
                add_forms(bundle, produced, limit, text_limit, clip)
        except Exception:
            pass
    if not isinstance(value, type):
        for method, mime, binary in _REPR_METHODS:
            if mime in bundle:
                continue
            func = getattr(value, method, None)
            if not callable(func):
                continue
            room = limit - _size(bundle)
            try:
                encoded = _encode_rich(
                    func(), binary, room if binary else min(text_limit, room), clip
                )
            except Exception:
                continue
            if encoded is not None:
                bundle[mime] = encoded
    if "image/png" not in bundle and images.is_image(value):  # a mode PIL's PNG repr refuses
        png = images.png_base64(value, limit - _size(bundle))
        if png is not None:
            bundle["image/png"] = png
    table = tables.dataframe_data(value, min(text_limit, limit - _size(bundle)))
    if table is not None:
        bundle[DATA_MIME] = table
    bundle["text/plain"] = plain_text(value, text_limit, clip, strict)
    return bundle


def add_forms(
    bundle: dict[str, str],
    forms: dict[Any, Any],
    limit: int,
    text_limit: int,
    clip: Clipper,
    skip: tuple[str, ...] = (),
) -> None:
    """Add `forms` (MIME type -> value) to `bundle` as the host takes them: string values, texts
    cut to `text_limit`, binary forms that do not fit the room left under `limit` left out, JSON
    forms serialised. Types in `skip` are left to the caller."""
    for mime, raw in forms.items():
        if not isinstance(mime, str) or mime in skip:
            continue
        binary = mime.startswith("image/") and mime != "image/svg+xml"
        room = limit - _size(bundle)
        encoded = _encode_rich(raw, binary, room if binary else min(text_limit, room), clip)
        if encoded is not None:
            bundle[mime] = encoded


def _size(bundle: dict[str, str]) -> int:
    return sum(len(v) for v in bundle.values())


def figure_bundles(limit: int, text_limit: int | None = None) -> list[dict[str, str]]:
    """Bundles of the images passed to PIL's `show()` since the last call, then (unless this runs
    for such a `show()`) of every open matplotlib figure, which are then closed (notebook
    semantics). A figure's bundle holds its PNG, its chart as JSON when the figure shows data and
    the chart fits in `text_limit` bytes (by default an eighth of `limit`, the host's ratio of
    display to text budget), and its text."""
    text_limit = limit // 8 if text_limit is None else min(text_limit, limit)
    shown = images.take_shown()  # every cell asks: the common answers cost little
    bundles = [mime_bundle(image, limit, text_limit) for image in shown] if shown else []
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is None or (shown and images.only_shown()):
        return bundles
    try:
        numbers = pyplot.get_fignums()
    except Exception:
        return bundles
    for number in numbers:
        try:
            figure = pyplot.figure(number)
            buffer = io.BytesIO()
            figure.savefig(buffer, format="png", bbox_inches="tight")  # draws: sets tick labels
            png = base64.b64encode(buffer.getvalue()).decode("ascii")
            text = plain_text(figure, 200)
        except Exception as exc:
            bundles.append({"text/plain": f"<figure {number} could not be rendered: {exc!r}>"})
            continue
        if len(png) > limit:
            bundles.append({"text/plain": f"{text} [PNG of {len(png)} bytes over the limit]"})
            continue
        bundle = {"image/png": png, "text/plain": text}
        chart = chart_json(figure, min(text_limit, limit - len(png) - len(text)))
        if chart is not None:
            bundle[CHART_MIME] = chart
        bundles.append(bundle)
    with contextlib.suppress(Exception):
        pyplot.close("all")
    return bundles


def chart_json(figure: Any, limit: int) -> str | None:
    """The chart of a drawn figure as JSON within `limit` bytes, or None: no data, too large,
    or a figure the extraction does not understand (its PNG is shown all the same)."""
    if limit <= 0:
        return None
    try:
        chart = charts.figure_chart(figure, limit)
        if chart is None:
            return None
        text = json.dumps(chart, ensure_ascii=False, allow_nan=False)
    except Exception:
        return None
    return text if len(text.encode("utf-8", "surrogatepass")) <= limit else None


def plain_text_of_exception(exc: BaseException, limit: int, clip: Clipper = _clip) -> str:
    try:
        text = str(exc)
    except Exception:
        return f"<str() of {type(exc).__name__} failed>"
    return clip(text, limit) if isinstance(text, str) else ""
