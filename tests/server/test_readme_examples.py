"""The README's client examples, run as they are written (only the base URL changed) against
`lci serve` and the fake model, with code that draws a figure: an example that breaks on real output
fails here, not for a reader."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.fake_llm import Turn, stream
from tests.server.helpers import REPO, FakeModel, LciServer

PLOT = "import matplotlib.pyplot as plt\nplt.figure(figsize=(2, 1), dpi=40)\nplt.plot([1, 2])\nplt.show()\n123**23"
VALUE = str(123**23)
_SECTION = re.compile(r"^### (.+?)\n(.*?)(?=^#{2,3} )", re.DOTALL | re.MULTILINE)
_PYTHON = re.compile(r"```python\n(.*?)```", re.DOTALL)


def examples(title: str) -> str:
    """The python blocks of a README section, joined into one program."""
    readme = (REPO / "README.md").read_text()
    sections = {m.group(1): m.group(2) for m in _SECTION.finditer(readme)}
    blocks = _PYTHON.findall(sections[title])
    assert blocks, f"no python example under {title!r}"
    return "\n".join(blocks)


def plotting_round() -> list[Turn]:
    return [
        stream(reasoning="Compute it, and draw it.", calls=[PLOT]),
        stream(reasoning="Done.", text=f"123^23 = {VALUE}."),
    ]


@pytest.fixture(scope="module")
def open_server(shared_fake: FakeModel) -> Iterator[LciServer]:
    """The README's examples talk to a server started as its quick start does: without keys."""
    with LciServer(shared_fake.base_url) as running:
        yield running


def run(program: str, server: LciServer) -> str:
    program = program.replace("http://127.0.0.1:8000", server.url)
    env = {k: v for k, v in os.environ.items() if k not in ("DASHSCOPE_API_KEY", "OPENAI_API_KEY")}
    done = subprocess.run(
        [sys.executable, "-c", program],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize(
    ("title", "turns"),
    [
        # create, stream, then continue in the container (three conversations)
        ("OpenAI Responses API", 3),
        ("OpenAI Chat Completions", 1),
        ("DashScope native API", 1),
    ],
)
def test_readme_example_runs(
    fake: FakeModel, open_server: LciServer, title: str, turns: int
) -> None:
    # Once, the streamed Responses example crashed when the code drew a figure.
    for _ in range(turns):
        fake.script(*plotting_round())
    out = run(examples(title), open_server)
    fake.check()
    assert f"123^23 = {VALUE}." in out
    if title == "OpenAI Responses API":
        assert f"[result]\n{VALUE}" in out  # the logs, not the image
