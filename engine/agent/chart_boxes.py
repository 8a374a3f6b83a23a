"""Box plots as chart elements: each box's five numbers and its outliers, read back from the lines
and patches `Axes.boxplot` draws.

A box is a rectangle from the first to the third quartile: a PathPatch with `patch_artist=True`,
else a closed five-point line. The median is the segment across the box's whole width, the
whiskers run from the box's edges to the minimum and the maximum, the fliers are lines of markers
only. Horizontal boxes (`vert=False`) are read transposed, so the same rules hold.
"""

from __future__ import annotations

from typing import Any

from .chart_values import is_a, is_grid_line, rounded, swap_axes, tick_label

Box = tuple[float, float, float, float]  # x0, x1, y0, y1 (x across the box, y along the values)
Segment = tuple[list[float], list[float]]


def is_boxplot(lines: list[Any]) -> bool:
    """Whether lines alone (boxplot without patch_artist) draw boxes: rectangles, each with a
    median across it, and otherwise only axis-parallel segments and markers."""
    rects = [r for r in (_rectangle(line) for line in lines) if r is not None]
    if not rects:
        return False
    if not all(_rectangle(a) or is_grid_line(a) or _markers_only(a) for a in lines):
        return False
    segments = [s for s in (_segment(line) for line in lines) if s is not None]
    return all(
        _median(box, segments) is not None or _median(_flip(box), _flipped(segments)) is not None
        for box in rects
    )


def box_elements(ax: Any, chart: dict[str, Any]) -> list[dict[str, Any]]:
    """The boxes of `ax`, in drawing order; swaps `chart`'s axes for horizontal boxes."""
    lines = list(ax.get_lines())
    found = [_patch_box(p) for p in ax.patches if is_a(p, "PathPatch")]
    found += [_rectangle(line) for line in lines]
    boxes = [b for b in found if b is not None]
    segments = [s for s in (_segment(line) for line in lines) if s is not None]
    fliers = [_xy(line) for line in lines if _markers_only(line)]
    horizontal = bool(boxes) and all(_median(b, segments) is None for b in boxes)
    category_axis = ax.xaxis
    if horizontal:
        boxes = [_flip(b) for b in boxes]
        segments = _flipped(segments)
        fliers = [(ys, xs) for xs, ys in fliers]
        category_axis = ax.yaxis
        swap_axes(chart)
    return [_element(box, segments, fliers, category_axis) for box in boxes]


def _element(box: Box, segments: list[Segment], fliers: list[Segment], axis: Any) -> dict[str, Any]:
    x0, x1, y0, y1 = box
    low, high = y0, y1
    for xs, ys in segments:
        if xs[0] == xs[1] and x0 <= xs[0] <= x1:  # a whisker, from an edge of the box outwards
            if _same(max(ys), y0):
                low = min(ys)
            elif _same(min(ys), y1):
                high = max(ys)
    outliers = [y for xs, ys in fliers for x, y in zip(xs, ys, strict=False) if x0 <= x <= x1]
    median = _median(box, segments)
    return {
        "label": tick_label(axis, (x0 + x1) / 2),
        "min": rounded(low),
        "first_quartile": rounded(y0),
        "median": rounded(median if median is not None else (y0 + y1) / 2),
        "third_quartile": rounded(y1),
        "max": rounded(high),
        "outliers": [rounded(y) for y in outliers],
    }


def _median(box: Box, segments: list[Segment]) -> float | None:
    """The y of the horizontal segment spanning the box's width inside it, if there is one."""
    x0, x1, y0, y1 = box
    for xs, ys in segments:
        if ys[0] == ys[1] and _same(min(xs), x0) and _same(max(xs), x1) and y0 <= ys[0] <= y1:
            return ys[0]
    return None


def _rectangle(line: Any) -> Box | None:
    xs, ys = _xy(line)
    if len(xs) != 5 or (xs[0], ys[0]) != (xs[-1], ys[-1]):
        return None
    if len(set(xs)) != 2 or len(set(ys)) != 2:
        return None
    return min(xs), max(xs), min(ys), max(ys)


def _patch_box(patch: Any) -> Box | None:
    try:
        vertices = [(float(x), float(y)) for x, y in patch.get_path().vertices]
    except (TypeError, ValueError, AttributeError):
        return None
    if not vertices:
        return None
    xs, ys = [x for x, _ in vertices], [y for _, y in vertices]
    return min(xs), max(xs), min(ys), max(ys)


def _segment(line: Any) -> Segment | None:
    xs, ys = _xy(line)
    if len(xs) != 2 or (xs[0] != xs[1] and ys[0] != ys[1]) or _markers_only(line):
        return None
    return xs, ys


def _markers_only(line: Any) -> bool:
    return str(line.get_linestyle()) in ("None", "none", "", " ")


def _xy(line: Any) -> Segment:
    try:
        return [float(x) for x in line.get_xdata()], [float(y) for y in line.get_ydata()]
    except (TypeError, ValueError):
        return [], []


def _flip(box: Box) -> Box:
    x0, x1, y0, y1 = box
    return y0, y1, x0, x1


def _flipped(segments: list[Segment]) -> list[Segment]:
    return [(ys, xs) for xs, ys in segments]


def _same(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))
