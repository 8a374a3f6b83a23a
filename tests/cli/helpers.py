"""`lci` as a user runs it: a real subprocess, with a clean `LCI_*` environment and small limits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SMALL_LIMITS = {"timeout_s": 20, "memory_mb": 256, "max_procs": 32, "disk_mb": 32}


def lci_env(state_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LCI_")}
    env.update(
        PYTHONPATH=str(REPO),
        LCI_STATE_DIR=str(state_dir),
        LCI_LIMITS=json.dumps(SMALL_LIMITS),
        LCI_INTERRUPT_GRACE_S="0.5",
    )
    env.update(extra)
    return env


def lci(
    *args: str, state_dir: Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args],
        env=lci_env(state_dir, **(env or {})),
        cwd=cwd or state_dir.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def timed_lines(*args: str, state_dir: Path) -> Iterator[tuple[float, str]]:
    """The stdout lines of `lci ARGS`, each with the seconds since start when it arrived."""
    started = time.monotonic()
    with subprocess.Popen(
        [sys.executable, "-m", "engine.cli", *args],
        env=lci_env(state_dir),
        cwd=state_dir.parent,
        stdout=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            yield time.monotonic() - started, line.rstrip("\n")
        assert process.wait(60) == 0


SPACED_PRINTS = (
    "import time\nfor i in range(3):\n    print('tick', i, flush=True)\n    time.sleep(0.8)"
)


def assert_live(lines: list[tuple[float, str]]) -> None:
    """Three prints 0.8 s apart must arrive apart, not together at the end."""
    ticks = [(at, text) for at, text in lines if text.startswith("tick")]
    assert [text for _, text in ticks] == ["tick 0", "tick 1", "tick 2"], lines
    assert ticks[2][0] - ticks[0][0] > 1.2, f"output arrived in one burst: {ticks}"
