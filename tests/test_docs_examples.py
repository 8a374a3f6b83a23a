"""Every example of the README runs as written against a real `lci serve` (subprocess backend) in
front of the fake model server, in a directory of its own, without any API key in the
environment, and prints what its comments say."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cli.helpers import lci_env
from tests.fake_llm import SSE, stream
from tests.readme import LCI_URL, MODEL_URL, examples, quickstart
from tests.server.helpers import FakeModel, LciServer

EXAMPLES = examples()


def scripted_model(body: dict[str, Any]) -> SSE:
    """The model the examples talk to: computes 123**23, then divides by 5, then answers."""
    messages = body.get("messages", [])
    last_user = max(i for i, m in enumerate(messages) if m.get("role") == "user")
    results = [m for m in messages[last_user:] if m.get("role") == "tool"]
    if not body.get("tools"):
        return stream(text="Hello from the fake model.")
    if not results:
        return stream(reasoning="First the power.", calls=["x = 123**23\nx"])
    if len(results) == 1:
        return stream(reasoning="Now divide it by 5.", calls=["x / 5"])
    return stream(reasoning="Both are known.", text="123**23 is large; divided by 5 it is too.")


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[FakeModel, LciServer]]:
    with FakeModel(default=scripted_model) as fake, LciServer(fake.base_url) as server:
        yield fake, server


def run_example(name: str, servers: tuple[FakeModel, LciServer], where: Path) -> str:
    fake, server = servers
    example = EXAMPLES[name]
    code = example.code.replace(LCI_URL, server.url).replace(MODEL_URL, fake.base_url)
    env = lci_env(where / "state")
    for key in ("DASHSCOPE_API_KEY", "OPENAI_API_KEY", "LCI_API_KEY"):
        env.pop(key, None)  # the examples must not need one
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    command = (
        [sys.executable, "-c", code]
        if example.lang == "python"
        else ["bash", "-euo", "pipefail", "-c", code]
    )
    done = subprocess.run(
        command, cwd=where, env=env, capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, f"{name} failed:\n{done.stdout}\n{done.stderr}"
    for expected in example.expected_prints():
        assert expected in done.stdout, f"{name}: {expected!r} not printed:\n{done.stdout}"
    return done.stdout


def _png(where: Path, name: str) -> None:
    assert (where / name).read_bytes().startswith(b"\x89PNG")


# Checks beyond "it ran and printed what its comments say", per example.
EXTRA: dict[str, Callable[[str, Path], None]] = {
    "exec-files": lambda out, where: (
        None if out.rstrip().endswith("Lima,5\nOslo,7") else pytest.fail(out)
    ),
    "exec-server": lambda out, where: None if out.rstrip().endswith("42") else pytest.fail(out),
    "chat": lambda out, where: None if "divided by 5" in out else pytest.fail(out),
    "responses": lambda out, where: None if "divided by 5" in out else pytest.fail(out),
    "chat-completions": lambda out, where: None if "Usage:" in out else pytest.fail(out),
    "dashscope": lambda out, where: None if "[code] x = 123**23" in out else pytest.fail(out),
    "dashscope-curl": lambda out, where: None if "code_interpreter" in out else pytest.fail(out),
    "sessions": lambda out, where: _png(where, "result.png"),
    "api-sync": lambda out, where: _png(where, "squares-1.png"),
    "api-client": lambda out, where: None if out.startswith("hello\n") else pytest.fail(out),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example(name: str, servers: tuple[FakeModel, LciServer], tmp_path: Path) -> None:
    out = run_example(name, servers, tmp_path)
    EXTRA.get(name, lambda out, where: None)(out, tmp_path)


def test_every_example_is_checked() -> None:
    assert set(EXAMPLES) == set(EXTRA) | {"api-async"}
    for name, example in EXAMPLES.items():
        assert example.lang in ("python", "bash"), name


def test_quickstart_gives_the_data_stack() -> None:
    """The first command is what a newcomer runs; its cell needs pandas and matplotlib, which
    `pip install -e .` must bring (CI runs it exactly as written in a fresh venv)."""
    first, second = quickstart()
    assert first.startswith("pip install -e . && lci exec ")
    assert "import pandas" in first and "matplotlib" in first
    assert second == "pip install -e '.[dev]' && pytest"
    core = (Path(__file__).parents[1] / "pyproject.toml").read_text().split("[project.optional")[0]
    for package in ("numpy", "pandas", "matplotlib"):
        assert f'"{package}"' in core


def test_quickstart_cells_run(tmp_path: Path) -> None:
    """The `lci exec` half of the first command, as written (CI runs the install half too)."""
    first = quickstart()[0]
    command = first.split(" && ", 1)[1]
    env = lci_env(tmp_path / "state")
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    done = subprocess.run(
        ["bash", "-c", command],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, "6\n"), done.stderr
