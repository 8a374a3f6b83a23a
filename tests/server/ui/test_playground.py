"""The playground in a real browser against a real `lci serve` and the scripted model: a question
shows its reasoning, its code cell while it runs, the cell's output and figure, the answer and its
token counts; a failing cell shows its traceback; the next question continues the conversation; an
uploaded file is read by the code, and a file the code wrote downloads."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.fake_llm import stream
from tests.server.helpers import FakeModel, LciServer
from tests.server.ui.conftest import App, recording

pytestmark = [pytest.mark.ui, pytest.mark.slow]

PLOT = (
    "import time\n"
    "import matplotlib.pyplot as plt\n"
    "squares = [n * n for n in range(1, 6)]\n"
    "print('squares:', squares)\n"
    "time.sleep(1.5)\n"
    "plt.figure(figsize=(5, 2.5))\n"
    "plt.plot(range(1, 6), squares, marker='o')\n"
    "plt.title('Squares')\n"
    "plt.show()\n"
    "sum(squares)"
)


def ask(page: Page, question: str) -> None:
    box = page.get_by_label("Message", exact=True)
    box.fill(question)
    box.press("Enter")  # the keyboard sends, as the hint says


def test_an_answer_shows_its_cell_output_figure_and_usage(app: App, fake: FakeModel) -> None:
    fake.script(
        stream(reasoning="Square 1 to 5, plot them.", text="Let me compute.", calls=[PLOT]),
        stream(text="The squares of 1 to 5 add up to 55."),
        stream(reasoning="Divide, to show an error.", calls=["total = 55\ntotal / 0"]),
        stream(text="Dividing by zero fails, as the traceback shows."),
    )
    page = app.open()
    ask(page, "Plot the squares of 1 to 5 and add them up")

    cell = page.locator(".cell").first
    expect(cell.locator("pre.code")).to_contain_text("plt.plot(range(1, 6), squares")
    expect(cell.locator(".badge")).to_have_text("running")  # shown while the code runs
    expect(cell.locator(".badge")).to_have_text("done")
    expect(cell.locator("pre.logs")).to_contain_text("squares: [1, 4, 9, 16, 25]")
    expect(cell.locator("pre.logs")).to_contain_text("55")
    figure = cell.locator("img")
    expect(figure).to_have_attribute("src", re.compile(r"^data:image/png;base64,"))
    assert figure.evaluate("img => img.complete && img.naturalWidth > 100")
    expect(page.locator(".answer").last).to_have_text("The squares of 1 to 5 add up to 55.")
    reasoning = page.locator("details.reasoning").first
    expect(reasoning).to_contain_text("Square 1 to 5, plot them.")
    expect(reasoning).not_to_have_attribute("open", "")  # collapsed until asked for
    expect(page.locator(".usage").first).to_contain_text("code runs: 1")
    expect(page.locator(".usage").first).to_contain_text(re.compile(r"Tokens: \d+ in, \d+ out"))
    expect(page.locator("#files")).to_contain_text("No files yet.")

    ask(page, "Now divide the total by zero")
    failed = page.locator(".cell.failed")
    expect(failed).to_have_count(1)
    expect(failed.locator(".badge")).to_have_text("error")
    expect(failed.locator("pre.logs")).to_contain_text("ZeroDivisionError")
    expect(failed.locator("pre.logs")).to_contain_text("total / 0")  # the traceback's line
    expect(page.locator(".answer").last).to_contain_text("Dividing by zero fails")

    # The second question continued the first (previous_response_id): the model saw both.
    sent = json.dumps(fake.chat_requests()[2]["messages"])
    assert "Plot the squares of 1 to 5" in sent and "Now divide the total by zero" in sent
    fake.check()


def test_an_uploaded_file_is_read_by_the_code(app: App, fake: FakeModel, tmp_path: Path) -> None:
    data = tmp_path / "numbers.csv"
    data.write_text("n\n3\n4\n5\n")
    code = (
        "import pandas as pd\n"
        "n = pd.read_csv('numbers.csv')['n']\n"
        "print('the sum is', n.sum())\n"
        "(n * 2).to_csv('doubled.csv', index=False)"
    )
    fake.script(stream(calls=[code]), stream(text="The numbers add up to 12."))
    page = app.open()
    page.get_by_label("Upload a file into the container").set_input_files(str(data))
    page.locator("#upload-form").get_by_role("button", name="Upload", exact=True).click()
    expect(page.locator("#files")).to_contain_text("numbers.csv")

    ask(page, "Add up the numbers in numbers.csv")
    expect(page.locator(".cell pre.logs")).to_contain_text("the sum is 12")
    expect(page.locator(".answer").last).to_have_text("The numbers add up to 12.")
    expect(page.locator("#files")).to_contain_text("doubled.csv")
    with page.expect_download() as info:
        page.get_by_role("button", name="Download doubled.csv").click()
    assert Path(info.value.path()).read_text().split() == ["n", "6", "8", "10"]
    fake.check()


def test_the_demo_model_plays_without_a_model_server(browser: Browser) -> None:
    """`lci serve --llm-model demo` (no model server, no key): the demo's three cells run, the
    second fails and the third draws a figure and writes a CSV file, listed beside the chat."""
    with LciServer(None, args=["--llm-model", "demo"]) as server, recording(browser, server) as app:
        page = app.page()
        ask(page, "Show me what you can do")
        expect(page.locator(".cell")).to_have_count(3)
        expect(page.locator(".cell.failed")).to_have_count(1)
        expect(page.locator(".cell.failed pre.logs")).to_contain_text("NameError")
        expect(page.locator(".cell").nth(2).locator("img")).to_have_count(1)
        expect(page.locator(".usage")).to_contain_text("code runs: 3")
        expect(page.locator(".answer").last).to_contain_text("The sandbox answered")
        expect(page.locator("#files")).to_contain_text("prime_gaps.png")
        expect(page.locator("#files")).to_contain_text("primes.csv")
        app.screenshot(page, "playground.png")
