"""`python -m benchmarks.commands_bench [--quick] [--docker auto|require|skip]`: what a shell command
beside the interpreter costs, next to a `1+1` cell in the same session, same run.

Per backend, in alternating blocks (so every figure sees the same machine): a warm `1+1` cell, a
`true` command line (run by `/bin/bash -l -c`, as E2B's and lci's commands are), `/bin/true` run
without a shell, and, as the floor, the host starting `true` itself (fork and exec, no sandbox).
Also the first command of a session, which starts its process service. Writes
benchmarks/results/commands.json and commands.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import time
from collections.abc import Awaitable, Callable
from typing import Any

from benchmarks.common import (
    RESULTS,
    chosen_backends,
    machine,
    plot_groups,
    progress,
    summarize,
)
from benchmarks.suite import lci_settings, new_state_dir, ready_manager
from engine.core.session import Session
from engine.models import BackendName, SessionSpec


async def _timed(step: Callable[[], Awaitable[Any]]) -> float:
    started = time.perf_counter()
    await step()
    return time.perf_counter() - started


async def _first_commands(manager: Any, backend: BackendName, count: int) -> list[float]:
    """The first command of fresh sessions: its process service starts on the way."""
    samples = []
    for _ in range(count):
        session = await manager.create(SessionSpec(backend=backend))
        samples.append(await _timed(lambda s=session: s.commands.run("true")))
        await manager.close(session.id)
    return samples


async def measure(backend: BackendName, count: int, firsts: int) -> dict[str, Any]:
    state_dir = new_state_dir()
    manager = await ready_manager(lci_settings(state_dir, subprocess_warm_pool=0))
    try:
        session: Session = await manager.create(SessionSpec(backend=backend))
        await session.commands.run("true")
        steps: dict[str, Callable[[], Awaitable[Any]]] = {
            "1+1 cell": lambda: session.execute("1+1"),
            "true command (bash -l -c)": lambda: session.commands.run("true"),
            "/bin/true command (no shell)": lambda: session.commands.run("/bin/true", args=[]),
        }
        samples: dict[str, list[float]] = {name: [] for name in steps}
        samples["host fork+exec of true (no sandbox)"] = []
        rounds = 5
        block = max(1, count // rounds)
        for round_number in range(rounds + 1):  # round 0 warms up
            for name, step in steps.items():
                batch = [await _timed(step) for _ in range(block)]
                if round_number:
                    samples[name] += batch
            host = [_host_true() for _ in range(block)]
            if round_number:
                samples["host fork+exec of true (no sandbox)"] += host
            progress(f"{backend.value}: round {round_number}/{rounds}")
        first = await _first_commands(manager, backend, firsts)
    finally:
        await manager.close_all()
    figures = {name: summarize(values) for name, values in samples.items()}
    figures["first command of a session"] = summarize(first)
    cell = figures["1+1 cell"]["p50_ms"]
    for stats in figures.values():
        stats["vs_cell"] = stats["p50_ms"] / cell
    return figures


def _host_true() -> float:
    started = time.perf_counter()
    subprocess.run(["true"], check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--docker", choices=["auto", "require", "skip"], default="auto")
    args = parser.parse_args()
    count, firsts = (50, 3) if args.quick else (500, 15)
    backends = chosen_backends(args.docker)
    results = {b.value: asyncio.run(measure(b, count, firsts)) for b in backends}
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "commands.json"
    path.write_text(
        json.dumps(
            {"machine": machine(), "mode": "quick" if args.quick else "full", **results}, indent=2
        )
        + "\n"
    )
    plot_groups(
        RESULTS / "commands.png",
        "A command beside the interpreter vs a 1+1 cell (p50, ms)",
        {
            backend: {name: s["p50_ms"] for name, s in figures.items()}
            for backend, figures in results.items()
        },
    )
    print("\nCommand round trips (ms)" + " " * 36 + "p50       p99   x cell")
    for backend, figures in results.items():
        for name, stats in figures.items():
            print(
                f"  {backend:<10} {name:<46} {stats['p50_ms']:>8.2f}  {stats['p99_ms']:>8.2f}  {stats['vs_cell']:>6.1f}"
            )
    print(f"\nresults: {path} and commands.png")


if __name__ == "__main__":
    main()
