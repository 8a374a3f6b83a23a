"""matplotlib figures as structured charts: the data behind a plot, in E2B's `chart` schema.

    {"type": "line" | "scatter" | "bar" | "pie" | "box_and_whisker" | "superchart" | "unknown",
     "title", "elements": [...], and for 2-D charts "x_label", "y_label", "x_unit", "y_unit";
     line and scatter charts also "x_ticks", "x_tick_labels", "x_scale" and the same for y}

Line and scatter elements are {"label", "points": [[x, y], ...]}, bars {"label", "group",
"value"}, pie wedges {"label", "angle", "radius"}, boxes {"label", "min", "first_quartile",
"median", "third_quartile", "max", "outliers"}; a figure with several axes is a `superchart`
whose elements are the charts of its axes. Dates are ISO 8601 strings, numbers that are not
finite are null.

Standard library only: matplotlib's objects are read through their methods and recognised by
class name, never imported (this runs only for figures that user code made). Tick labels exist
only after a draw, so a figure is read after it was rendered.
"""

from __future__ import annotations

import re
import sys
from typing import Any

from .chart_boxes import box_elements, is_boxplot
from .chart_values import (
    degrees,
    is_a,
    is_grid_line,
    number,
    rounded,
    swap_axes,
    tick_label,
    value,
)

_UNIT = re.compile(r"\s\((.*?)\)|\[(.*?)\]")  # "Time (s)" and "Length [m]" name a unit


class TooLarge(Exception):
    """The figure holds more points than the chart's byte budget could carry."""


def figure_chart(figure: Any, budget: int = 1 << 62) -> dict[str, Any] | None:
    """The chart of `figure`, or None when it shows no data. Raises TooLarge when its points
    would take more than about `budget` bytes (checked before they are copied)."""
    axes = list(figure.get_axes())
    if not axes or not any(ax.has_data() for ax in axes):
        return None
    _check_size(axes, budget)
    if len(axes) > 1:
        title = _suptitle(figure)
        return {"type": "superchart", "title": title, "elements": [axes_chart(a) for a in axes]}
    return axes_chart(axes[0])


def axes_chart(ax: Any) -> dict[str, Any]:
    kind = chart_type(ax)
    if kind in ("line", "scatter"):
        chart = _point_chart(ax, kind)
    elif kind == "bar":
        chart = _bar_chart(ax)
    elif kind == "box_and_whisker":
        chart = _chart_2d(ax, kind)
        chart["elements"] = box_elements(ax, chart)
    else:
        chart = {"type": kind, "title": _text(ax.get_title()), "elements": []}
        if kind == "pie":
            chart["elements"] = _wedges(ax)
    return chart


def chart_type(ax: Any) -> str:
    """What the axes show, from the kinds of artists on them (texts aside)."""
    artists = [a for a in _children(ax) if not is_a(a, "Text")]
    if all(is_a(a, "Line2D") for a in artists):
        return "box_and_whisker" if is_boxplot(artists) else "line"
    if all(is_a(a, "PathPatch", "Line2D") for a in artists):
        return "box_and_whisker"  # boxplot(patch_artist=True)
    artists = [a for a in artists if not (is_a(a, "Line2D") and is_grid_line(a))]
    for kind, names in (("scatter", ("PathCollection",)), ("pie", ("Wedge",))):
        if all(is_a(a, *names) for a in artists):
            return kind
    if all(is_a(a, "Rectangle") for a in artists):
        return "bar"
    return "unknown"


# -- 2-D charts ------------------------------------------------------------------------------------
def _chart_2d(ax: Any, kind: str) -> dict[str, Any]:
    x_label, y_label = _text(ax.get_xlabel()), _text(ax.get_ylabel())
    return {
        "type": kind,
        "title": _text(ax.get_title()),
        "x_label": x_label,
        "y_label": y_label,
        "x_unit": _unit(x_label),
        "y_unit": _unit(y_label),
        "elements": [],
    }


def _point_chart(ax: Any, kind: str) -> dict[str, Any]:
    chart = _chart_2d(ax, kind)
    for name, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
        labels = [label.get_text() for label in axis.get_ticklabels()]
        ticks = _ticks(axis, axis.get_ticklocs())
        chart[f"{name}_ticks"] = ticks
        chart[f"{name}_tick_labels"] = labels
        chart[f"{name}_scale"] = _scale(axis, ticks, labels)
    if kind == "line":
        chart["elements"] = [_line(line) for line in ax.get_lines() if not is_grid_line(line)]
    else:
        dates = [_is_date_axis(axis) for axis in (ax.xaxis, ax.yaxis)]
        chart["elements"] = [_scatter(c, dates) for c in ax.collections]
    return chart


def _line(line: Any) -> dict[str, Any]:
    label = str(line.get_label())
    if label.startswith("_child"):  # no label given: matplotlib's internal name
        label = f"Line {label[6:]}"
    points = [
        [value(x), value(y)] for x, y in zip(line.get_xdata(), line.get_ydata(), strict=False)
    ]
    return {"label": label, "points": points}


def _scatter(collection: Any, dates: list[bool]) -> dict[str, Any]:
    label = str(collection.get_label())
    if label.startswith("_child"):
        label = f"Series {label[6:]}"
    points = [
        [_date_or_value(x, dates[0]), _date_or_value(y, dates[1])]
        for x, y in collection.get_offsets()
    ]
    return {"label": label, "points": points}


def _bar_chart(ax: Any) -> dict[str, Any]:
    chart = _chart_2d(ax, "bar")
    containers = [c for c in getattr(ax, "containers", []) if is_a(c, "BarContainer")]
    horizontal = False
    for container in containers:
        group = str(container.get_label())
        if group.startswith("_container"):
            group = f"Group {group[10:]}"
        rects = list(container)
        horizontal = _horizontal(container, rects)
        axis = ax.yaxis if horizontal else ax.xaxis
        for rect in rects:
            if horizontal:
                center, size = rect.get_y() + rect.get_height() / 2, rect.get_width()
            else:
                center, size = rect.get_x() + rect.get_width() / 2, rect.get_height()
            label = tick_label(axis, center)
            chart["elements"].append({"label": label, "group": group, "value": value(size)})
    if horizontal:  # barh: the values run along x
        swap_axes(chart)
    return chart


def _horizontal(container: Any, rects: list[Any]) -> bool:
    orientation = getattr(container, "orientation", None)
    if orientation in ("horizontal", "vertical"):
        return bool(orientation == "horizontal")
    heights = [rect.get_height() for rect in rects]
    return len(rects) > 1 and all(h == heights[0] for h in heights)


def _wedges(ax: Any) -> list[dict[str, Any]]:
    return [
        {
            "label": str(wedge.get_label()),
            "angle": degrees(abs(float(wedge.theta2) - float(wedge.theta1))),
            "radius": number(wedge.r),
        }
        for wedge in ax.patches
        if is_a(wedge, "Wedge")
    ]


# -- axes ------------------------------------------------------------------------------------------
def _converter(axis: Any) -> Any:
    getter = getattr(axis, "get_converter", None)  # matplotlib >= 3.10
    return getter() if callable(getter) else getattr(axis, "converter", None)


def _is_date_axis(axis: Any) -> bool:
    converter = _converter(axis)
    return converter is not None and any(
        "DateConverter" in c.__name__ for c in type(converter).__mro__
    )


def _date_or_value(v: Any, is_date: bool) -> Any:
    dates = sys.modules.get("matplotlib.dates")
    if is_date and dates is not None:
        try:
            return dates.num2date(float(v)).isoformat()
        except (TypeError, ValueError, OverflowError):
            return None
    return value(v)


def _tick(v: Any, is_date: bool) -> Any:
    tick = _date_or_value(v, is_date)
    return rounded(tick) if isinstance(tick, float) else tick


def _ticks(axis: Any, locations: Any) -> list[Any]:
    is_date = _is_date_axis(axis)
    return [_tick(tick, is_date) for tick in locations]


def _scale(axis: Any, ticks: list[Any], labels: list[str]) -> str:
    """linear, log, ... as matplotlib names the scale; datetime for dates; categorical for named
    categories (ticks at 0, 1, 2, ... labelled with other texts than those numbers)."""
    if _is_date_axis(axis):
        return "datetime"
    converter = _converter(axis)
    if converter is not None and is_a(converter, "StrCategoryConverter"):
        return "categorical"
    scale = str(axis.get_scale())
    if scale != "linear":
        return scale
    for i, (tick, label) in enumerate(zip(ticks, labels, strict=False)):
        if not (tick == i and str(i) != label):
            return "linear"
    return "categorical" if ticks else "linear"


def _check_size(axes: list[Any], budget: int) -> None:
    points = 0
    for ax in axes:
        points += sum(len(line.get_xdata()) for line in ax.get_lines())
        points += sum(len(c.get_offsets()) for c in ax.collections if is_a(c, "PathCollection"))
    if points * 8 > budget:  # a point takes at least 8 bytes of JSON: "[1, 2], "
        raise TooLarge(f"{points} points")


def _children(ax: Any) -> list[Any]:
    children = getattr(ax, "_children", None)  # the artists added to the axes, in order
    if children is not None:
        return list(children)
    return [*ax.lines, *ax.collections, *ax.patches, *ax.texts, *ax.images, *ax.tables]


def _suptitle(figure: Any) -> str | None:
    suptitle = getattr(figure, "_suptitle", None)
    return _text(suptitle.get_text()) if suptitle is not None else None


def _text(text: Any) -> str | None:
    return str(text) if text else None


def _unit(label: str | None) -> str | None:
    match = _UNIT.search(label) if label else None
    return (match.group(1) or match.group(2)) if match else None
