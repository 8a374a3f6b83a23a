"""What the chart extraction shares: recognising matplotlib artists without importing matplotlib,
and turning their data into JSON values."""

from __future__ import annotations

import datetime
import math
from typing import Any


def is_a(obj: Any, *names: str) -> bool:
    """Whether `obj` is an instance of a class named one of `names` (matplotlib not imported)."""
    return any(cls.__name__ in names for cls in type(obj).__mro__)


def is_grid_line(line: Any) -> bool:
    """A two-point horizontal or vertical line: a grid or reference line, not data."""
    xs, ys = list(line.get_xdata()), list(line.get_ydata())
    return len(xs) == 2 and len(ys) == 2 and (xs[0] == xs[1] or ys[0] == ys[1])


def value(v: Any) -> Any:
    """A data value as JSON: dates as ISO strings, numbers as floats (null if not finite), texts
    as they are."""
    if isinstance(v, str):
        return v
    if isinstance(v, datetime.date):
        return v.isoformat()
    if type(v).__name__ == "datetime64":
        return str(v.astype("datetime64[s]"))
    if not isinstance(v, int | float):
        item = getattr(v, "item", None)  # a numpy scalar
        if not callable(item):
            return str(v)
        v = item()
        if not isinstance(v, int | float):
            return str(v)
    return number(v)


def number(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def rounded(v: Any) -> float | None:
    """`v` without float noise (a pie's 324.00000000000006 degrees is 324)."""
    f = number(v)
    return None if f is None else float(f"{f:.10g}")


def degrees(v: Any) -> float | None:
    """An angle to a thousandth of a degree: older matplotlib keeps wedge angles in single
    precision, whose error near 400 degrees is some 1e-5 (323.9999914 for 324)."""
    f = number(v)
    return None if f is None else round(f, 3) + 0.0


def tick_label(axis: Any, position: float) -> str:
    """The text of the tick at `position` (a category's name), or the position as a number."""
    tolerance = 1e-9 * max(1.0, abs(position))
    for tick, label in zip(axis.get_ticklocs(), axis.get_ticklabels(), strict=False):
        if abs(tick - position) <= tolerance and label.get_text():
            return str(label.get_text())
    return f"{position:g}"


def swap_axes(chart: dict[str, Any]) -> None:
    """Horizontal bars and boxes: x names the categories, as for vertical ones."""
    chart["x_label"], chart["y_label"] = chart["y_label"], chart["x_label"]
    chart["x_unit"], chart["y_unit"] = chart["y_unit"], chart["x_unit"]
