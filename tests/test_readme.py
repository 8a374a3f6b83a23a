"""The README's quick start: the two commands CI runs exactly as written in a fresh clone
(`python tests/readme.py quickstart`). Its examples, and the docs pages', are run by
tests/test_docs_examples.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.cli.helpers import lci_env
from tests.readme import README, ROOT, quickstart


def test_quickstart_gives_the_data_stack() -> None:
    """The first command is what a newcomer runs; its cell needs pandas and matplotlib, which
    `pip install -e .` must bring (CI runs it exactly as written in a fresh venv)."""
    first, second = quickstart()
    assert first.startswith("pip install -e . && lci exec ")
    assert "import pandas" in first and "matplotlib" in first
    assert second == "pip install -e '.[dev]' && pytest"
    core = (ROOT / "pyproject.toml").read_text().split("[project.optional")[0]
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


def test_the_script_prints_the_quickstart_commands() -> None:
    done = subprocess.run(
        [sys.executable, "tests/readme.py", "quickstart"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout == "\n".join(quickstart()) + "\n"
    assert done.stdout.splitlines()[1] == "pip install -e '.[dev]' && pytest"


def test_the_readme_stays_a_front_door() -> None:
    assert len(README.read_text().splitlines()) <= 300
