"""`python -m benchmarks.cli_startup [RUNS]`: how long `lci --version` and `lci exec '1+1'` take.

Each command runs RUNS times (default 10) as `python -m engine.cli ...`; printed are the median
wall time and the median CPU time (user + system of the child). On a busy machine the wall time
swings with the load; the CPU time is what the command itself costs.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

COMMANDS = [["--version"], ["exec", "1+1"]]


def measure(argv: list[str], runs: int) -> tuple[float, float]:
    """Median wall and CPU seconds of `python -m engine.cli *argv`."""
    walls, cpus = [], []
    for _ in range(runs):
        before = os.times()
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "engine.cli", *argv],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=True,
        )
        walls.append(time.perf_counter() - started)
        after = os.times()
        cpus.append(
            after.children_user
            - before.children_user
            + after.children_system
            - before.children_system
        )
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    for argv in COMMANDS:
        wall, cpu = measure(argv, runs)
        shown = " ".join(repr(a) if " " in a or "+" in a else a for a in argv)
        print(
            f"lci {shown:<16} wall {wall * 1000:6.0f} ms   cpu {cpu * 1000:6.0f} ms  ({runs} runs)"
        )


if __name__ == "__main__":
    main()
