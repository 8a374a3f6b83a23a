"""`lci --version` and `lci exec` start fast: they import none of the heavy packages only other
subcommands need (the openai SDK, httpx, the web framework). Timings: benchmarks/cli_startup.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.helpers import lci_env

HEAVY = ("openai", "httpx", "fastapi", "starlette", "uvicorn", "mcp", "docker", "ray")
PROBE = """
import json, sys
from engine.cli.main import main
try:
    code = main(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(json.loads(HEAVY)))
print(json.dumps({"code": code, "heavy": heavy}), file=sys.stderr)
"""


def imported(tmp_path: Path, *argv: str) -> tuple[int, list[str]]:
    """The exit status of `lci ARGV` run in-process, and the heavy packages it imported."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE.replace("HEAVY", repr(json.dumps(HEAVY))), *argv],
        env=lci_env(tmp_path / "state"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    report = json.loads(done.stderr.strip().splitlines()[-1])
    return report["code"], list(report["heavy"])


@pytest.mark.parametrize("argv", [["--version"], ["exec", "1+1"], ["chat", "--help"]])
def test_startup_imports_nothing_heavy(tmp_path: Path, argv: list[str]) -> None:
    assert imported(tmp_path, *argv) == (0, [])


def test_the_probe_sees_a_heavy_import(tmp_path: Path) -> None:
    # The probe can fail: `lci chat` imports the openai SDK once it runs (here to fail at once).
    code, heavy = imported(tmp_path, "chat", "--base-url", "http://127.0.0.1:9/v1", "x")
    assert code == 1 and "openai" in heavy
