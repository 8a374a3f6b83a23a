"""A figure's chart (the `e2b/chart` part of its display) as one short line for the model, which
does not see the image: the chart's type, title, axis labels and the names of its series. The
chart's data stays out of the prompt."""

from __future__ import annotations

import json
from typing import Any

CHART_MIME = "e2b/chart"
_MAX_NAMES = 8
_MAX_NAME = 40


def chart_line(data: dict[str, str]) -> str | None:
    """`[chart: line "Title"; x: ...; y: ...; series: a, b]`, or None without a readable chart."""
    raw = data.get(CHART_MIME)
    if raw is None:
        return None
    try:
        chart = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(chart, dict):
        return None
    return f"[chart: {_describe(chart)}]"


def _describe(chart: dict[str, Any]) -> str:
    kind = str(chart.get("type") or "unknown")
    parts = [kind + (f" {_short(chart['title'])!r}" if chart.get("title") else "")]
    elements = [e for e in chart.get("elements") or [] if isinstance(e, dict)]
    if kind == "superchart":
        return "; ".join(parts + [f"({_describe(e)})" for e in elements])
    for axis in ("x", "y"):
        if chart.get(f"{axis}_label"):
            parts.append(f"{axis}: {_short(chart[f'{axis}_label'])}")
    what = {"bar": "group", "pie": "wedges", "box_and_whisker": "boxes"}.get(kind, "series")
    names = [str(e.get(what) if what == "group" else e.get("label", "")) for e in elements]
    names = list(dict.fromkeys(names))  # a group's name once, however many bars it has
    if names:
        label = "groups" if what == "group" else what
        shown = ", ".join(_short(name) for name in names[:_MAX_NAMES])
        more = f" and {len(names) - _MAX_NAMES} more" if len(names) > _MAX_NAMES else ""
        parts.append(f"{label}: {shown}{more}")
    return "; ".join(parts)


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= _MAX_NAME else text[: _MAX_NAME - 3] + "..."
