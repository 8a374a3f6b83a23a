"""The agent's chart extraction (engine/agent/charts.py) on real matplotlib figures, drawn with Agg
in this process: each kind of plot gives its chart type, texts and values."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from engine.agent import display
from engine.agent.charts import TooLarge, figure_chart


def axes() -> tuple[Figure, Any]:
    figure = Figure()
    return figure, figure.subplots()


def chart_of(figure: Figure) -> dict[str, Any]:
    FigureCanvasAgg(figure).draw()  # tick labels exist only after a draw, as in the sandbox
    chart = figure_chart(figure)
    assert chart is not None
    json.dumps(chart, allow_nan=False)  # plain JSON
    return chart


def test_a_line_chart_has_its_series_texts_units_and_scales() -> None:
    figure, ax = axes()
    ax.plot([1, 2, 3], [4, 5, float("nan")], label="sales")
    ax.plot([1, 2, 3], [1, 0, 1])
    ax.axhline(2)  # a reference line, not data
    ax.set(title="Trend", xlabel="Time (s)", ylabel="Length [m]")
    chart = chart_of(figure)
    assert chart["type"] == "line" and chart["title"] == "Trend"
    assert (chart["x_unit"], chart["y_unit"]) == ("s", "m")
    assert chart["elements"] == [
        {"label": "sales", "points": [[1.0, 4.0], [2.0, 5.0], [3.0, None]]},
        {"label": "Line 1", "points": [[1.0, 1.0], [2.0, 0.0], [3.0, 1.0]]},
    ]
    assert chart["x_scale"] == "linear" and all(isinstance(t, float) for t in chart["x_ticks"])
    assert len(chart["x_tick_labels"]) == len(chart["x_ticks"])


def test_dates_and_categories_name_their_scales() -> None:
    figure, ax = axes()
    days = [datetime.date(2024, 1, d) for d in (1, 2, 3)]
    ax.plot(days, ["low", "high", "low"])
    chart = chart_of(figure)
    assert (chart["x_scale"], chart["y_scale"]) == ("datetime", "categorical")
    assert chart["elements"][0]["points"][0] == ["2024-01-01", "low"]
    datetime.datetime.fromisoformat(chart["x_ticks"][0])
    assert chart["y_tick_labels"] == ["low", "high"]


def test_a_bar_chart_names_each_bar_and_group() -> None:
    figure, ax = axes()
    ax.bar(["Ann", "Bob", "Cy"], [100, 200, 300], label="Books")
    ax.bar(["Ann", "Bob", "Cy"], [1, 2, 3], bottom=[100, 200, 300])
    ax.set(title="Sales", xlabel="Author", ylabel="Sold")
    chart = chart_of(figure)
    assert (chart["type"], chart["title"], chart["x_label"]) == ("bar", "Sales", "Author")
    assert [(e["label"], e["group"], e["value"]) for e in chart["elements"]] == [
        ("Ann", "Books", 100),
        ("Bob", "Books", 200),
        ("Cy", "Books", 300),
        ("Ann", "Group 1", 1),
        ("Bob", "Group 1", 2),
        ("Cy", "Group 1", 3),
    ]


def test_horizontal_bars_keep_the_categories_on_x() -> None:
    figure, ax = axes()
    ax.barh(["a", "b"], [5, 5])  # equal values: the orientation comes from the container
    ax.set(xlabel="Count", ylabel="Letter")
    chart = chart_of(figure)
    assert (chart["x_label"], chart["y_label"]) == ("Letter", "Count")
    assert [(e["label"], e["value"]) for e in chart["elements"]] == [("a", 5), ("b", 5)]


def test_a_scatter_has_its_points() -> None:
    figure, ax = axes()
    ax.scatter([1, 2], [3, 4], label="first")
    ax.scatter([5], [6])
    chart = chart_of(figure)
    assert chart["type"] == "scatter"
    assert chart["elements"] == [
        {"label": "first", "points": [[1.0, 3.0], [2.0, 4.0]]},
        {"label": "Series 1", "points": [[5.0, 6.0]]},
    ]


def test_a_pie_has_its_wedges_in_degrees() -> None:
    figure, ax = axes()
    ax.pie([90, 10], labels=["No", "Yes"], autopct="%1.1f%%")
    ax.set_title("Early?")
    chart = chart_of(figure)
    assert chart == {
        "type": "pie",
        "title": "Early?",
        "elements": [
            {"label": "No", "angle": 324.0, "radius": 1.0},
            {"label": "Yes", "angle": 36.0, "radius": 1.0},
        ],
    }


BOX_A = {
    "label": "A",
    "min": 78.0,
    "first_quartile": 79.75,
    "median": 86.5,
    "third_quartile": 89.5,
    "max": 92.0,
    "outliers": [20.0],
}


@pytest.mark.parametrize(
    "options", [{}, {"patch_artist": True}, {"orientation": "horizontal"}], ids=str
)
def test_a_box_plot_has_five_numbers_and_outliers_per_box(options: dict[str, Any]) -> None:
    figure, ax = axes()
    ax.boxplot([[85, 90, 78, 92, 88, 20], [2, 3, 4]], tick_labels=["A", "B"], **options)
    ax.set(title="Scores", xlabel="Class")
    chart = chart_of(figure)
    assert chart["type"] == "box_and_whisker" and chart["title"] == "Scores"
    assert chart["elements"][0] == BOX_A
    assert chart["elements"][1]["label"] == "B" and chart["elements"][1]["median"] == 3.0


def test_several_axes_are_a_superchart_and_other_plots_unknown() -> None:
    figure = Figure()
    left, right = figure.subplots(1, 2)
    left.plot([1, 2])
    right.fill_between([0, 1], [0, 1])
    right.set_title("area")
    figure.suptitle("Both")
    chart = chart_of(figure)
    assert (chart["type"], chart["title"]) == ("superchart", "Both")
    assert [c["type"] for c in chart["elements"]] == ["line", "unknown"]
    assert chart["elements"][1] == {"type": "unknown", "title": "area", "elements": []}


def test_an_empty_figure_has_no_chart_and_a_huge_one_is_refused() -> None:
    figure, ax = axes()
    assert figure_chart(figure) is None
    ax.plot(range(1000))
    with pytest.raises(TooLarge):
        figure_chart(figure, budget=1000)
    FigureCanvasAgg(figure).draw()
    assert display.chart_json(figure, 1000) is None
    assert display.chart_json(figure, 1 << 20) is not None


def test_pie_angles_lose_single_precision_noise() -> None:
    # matplotlib before 3.7 keeps wedge angles as float32: 324 and 36 degrees come out as
    # 323.9999914 and 36.0000086.
    from engine.agent.chart_values import degrees

    assert degrees(323.9999914) == 324.0 and degrees(36.0000086) == 36.0
    assert degrees(123.4567) == 123.457
