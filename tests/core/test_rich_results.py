"""Rich results in a real sandbox, on both backends: figures carry their chart beside the PNG,
DataFrames their table as data, PIL images have PNGs (displayed, or shown with `Image.show()`)."""

from __future__ import annotations

import base64
import json
from typing import Any

from engine.core.session import Session
from engine.models import DisplayOutput, Outcome, StreamOutput

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

FIGURES = """
import matplotlib.pyplot as plt
plt.plot([1, 2, 3], [2, 4, 8], label='growth'); plt.title('Line'); plt.xlabel('Day (d)')
plt.show()
plt.bar(['a', 'b'], [3, 5], label='sold'); plt.title('Bars')
plt.show()
plt.scatter([1, 2], [3, 4], label='dots'); plt.title('Dots')
plt.show()
plt.pie([1, 3], labels=['p', 'q']); plt.title('Pie')
plt.show()
fig, ax = plt.subplots(); ax.boxplot([[1, 2, 3, 4, 5, 20]]); ax.set_xticks([1], ['box'])
ax.set_title('Box')
"""


def chart(display: DisplayOutput) -> dict[str, Any]:
    assert base64.b64decode(display.data["image/png"]).startswith(PNG_MAGIC)
    parsed: dict[str, Any] = json.loads(display.data["e2b/chart"])
    return parsed


async def test_figures_carry_their_charts(session: Session) -> None:
    result = await session.execute(FIGURES)
    assert result.outcome is Outcome.COMPLETED, result.error
    line, bar, scatter, pie, box = (chart(d) for d in result.displays)
    assert (line["type"], line["title"], line["x_unit"]) == ("line", "Line", "d")
    assert line["elements"] == [{"label": "growth", "points": [[1, 2], [2, 4], [3, 8]]}]
    assert (bar["type"], bar["title"]) == ("bar", "Bars")
    assert [(e["label"], e["group"], e["value"]) for e in bar["elements"]] == [
        ("a", "sold", 3),
        ("b", "sold", 5),
    ]
    assert scatter["type"] == "scatter"
    assert scatter["elements"] == [{"label": "dots", "points": [[1, 3], [2, 4]]}]
    assert pie["type"] == "pie" and [(e["label"], e["angle"]) for e in pie["elements"]] == [
        ("p", 90),
        ("q", 270),
    ]
    assert box["type"] == "box_and_whisker" and box["title"] == "Box"
    assert box["elements"] == [
        {
            "label": "box",
            "min": 1,
            "first_quartile": 2.25,
            "median": 3.5,
            "third_quartile": 4.75,
            "max": 5,
            "outliers": [20],
        }
    ]


async def test_a_figure_without_data_is_still_a_png(session: Session) -> None:
    result = await session.execute("import matplotlib.pyplot as plt\nplt.figure()\nplt.show()")
    (figure,) = result.displays
    assert "image/png" in figure.data and "e2b/chart" not in figure.data


async def test_a_dataframe_carries_its_table_as_data(session: Session) -> None:
    code = (
        "import pandas as pd\n"
        "frame = pd.DataFrame({'n': [1, 2], 'when': pd.to_datetime(['2024-01-01', '2024-01-02']),"
        " 'x': [0.5, float('nan')]})\n"
        "frame"
    )
    result = await session.execute(code)
    assert result.outcome is Outcome.COMPLETED, result.error
    assert result.result is not None
    bundle = result.result.data
    assert json.loads(bundle["e2b/data"]) == {
        "n": [1, 2],
        "when": ["2024-01-01T00:00:00", "2024-01-02T00:00:00"],
        "x": [0.5, None],
    }
    assert "<table" in bundle["text/html"] and "2024-01-02" in bundle["text/plain"]
    plain = await session.execute("import pandas as pd\npd.Series([1, 2])")
    assert plain.result is not None and "e2b/data" not in plain.result.data
    shown = await session.execute("display(frame)")  # IPython's display: the same table
    (item,) = [o for o in shown.outputs if o.type == "display"]
    assert json.loads(item.data["e2b/data"])["n"] == [1, 2] and "<table" in item.data["text/html"]


async def test_a_big_dataframe_keeps_its_text_within_the_limits(session: Session) -> None:
    # TEST_LIMITS: 64 KiB of text; the table as JSON would take more.
    result = await session.execute("import pandas as pd\npd.DataFrame({'n': range(40000)})")
    assert result.result is not None and not result.truncated
    assert "e2b/data" not in result.result.data and "text/plain" in result.result.data


async def test_pil_images_are_pngs_when_displayed_or_shown(session: Session) -> None:
    code = (
        "from PIL import Image\n"
        "print('before')\n"
        "Image.new('RGB', (4, 3), 'red').show()\n"
        "print('after')\n"
        "display(Image.new('RGBA', (5, 5)))\n"
        "Image.new('F', (2, 2))"  # float pixels: PIL makes no PNG of them
    )
    result = await session.execute(code)
    assert result.outcome is Outcome.COMPLETED, result.error
    kinds = [type(item).__name__ for item in result.outputs]
    assert kinds == [
        "StreamOutput",
        "DisplayOutput",
        "StreamOutput",
        "DisplayOutput",
        "ResultOutput",
    ]
    assert isinstance(result.outputs[2], StreamOutput) and result.outputs[2].text == "after\n"
    shown, displayed = result.displays
    assert result.result is not None
    for bundle in (shown.data, displayed.data, result.result.data):
        assert base64.b64decode(bundle["image/png"]).startswith(PNG_MAGIC)
    assert "size=4x3" in shown.data["text/plain"]
    # show() gives what displaying the image gives (PNG, and JPEG where PIL offers it)
    again = await session.execute("from PIL import Image\ndisplay(Image.new('RGB', (4, 3), 'red'))")
    assert set(again.displays[0].data) == set(shown.data)


async def test_a_cell_saving_a_pil_image_shows_it(session: Session) -> None:
    code = (
        "from PIL import Image\n"
        "import io\n"
        "image = Image.new('RGB', (6, 2), 'blue')\n"
        "image.save('blue.png')\n"
        "image.save(io.BytesIO(), format='PNG')  # to a file object: nothing shown\n"
        "import matplotlib.pyplot as plt\n"
        "plt.figure(); plt.plot([1, 2]); plt.savefig('plot.jpg'); plt.close('all')\n"
        "print('saved')"
    )
    result = await session.execute(code)
    assert result.outcome is Outcome.COMPLETED, result.error
    (shown,) = result.displays  # matplotlib's JPEG, written through PIL, shows nothing
    assert base64.b64decode(shown.data["image/png"]).startswith(PNG_MAGIC)
    assert "size=6x2" in shown.data["text/plain"]
    assert (await session.read_file("blue.png")).startswith(PNG_MAGIC)
