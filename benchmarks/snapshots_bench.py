"""`python -m benchmarks.snapshots_bench [--quick] [--docker auto|require|skip]`: snapshot, restore
and fork of a live session holding the data stack and 100 MB of arrays, next to what they replace
(a fresh session that re-runs the cells), same run.

Per backend: the session imports numpy and pandas, builds 100 MB of float64 arrays and a DataFrame,
and writes a 1 MB CSV into its workdir. Then, each timed on its own: a snapshot (deleted again,
untimed), a restore of one snapshot (after a cell changed a variable), a fork into one new session
(closed again, untimed), and a fresh session plus the same setup cells; and a fork of a session
holding the data stack and a small namespace (the common case of an agent's session). Memory: what a snapshot
holds right after it is taken, and after the kernel rewrote every array (copy-on-write at work).
Writes benchmarks/results/snapshots.json and snapshots.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
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
from engine.core.manager import SessionManager
from engine.core.session import Session
from engine.models import BackendName, Limits, SessionSpec

SETUP = (
    "import numpy as np, pandas as pd\n"
    "arrays = [np.random.default_rng(i).random(1_310_720) for i in range(10)]  # 10 x 10 MiB\n"
    "df = pd.DataFrame({'k': np.arange(200_000) % 97, 'v': np.arange(200_000) * 0.5})\n"
    "df.to_csv('data.csv', index=False)\n"
    "total = sum(a.sum() for a in arrays)\n"
)
REWRITE = "for a in arrays: a += 1.0\n"
# What an agent's session often holds: the data stack, a small frame, a few values and a function.
SMALL = (
    "import numpy as np, pandas as pd\n"
    "df = pd.DataFrame({'k': np.arange(1000) % 7, 'v': np.arange(1000) * 0.5})\n"
    "means = df.groupby('k').v.mean(); n = len(df); label = 'run-1'\n"
    "def scale(x): return x * n\n"
)
LIMITS = Limits(memory_mb=2048, max_procs=256, output_bytes=4 << 20, timeout_s=120, disk_mb=512)


async def _timed(step: Callable[[], Awaitable[Any]]) -> float:
    started = time.perf_counter()
    await step()
    return time.perf_counter() - started


def _p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] * 1000


async def _setup(session: Session) -> None:
    result = await session.execute(SETUP)
    if result.error is not None:
        raise RuntimeError(f"setup failed: {result.error.value}")


async def _fresh(manager: SessionManager, spec: SessionSpec) -> Session:
    session = await manager.create(spec)
    await _setup(session)
    return session


async def measure(backend: BackendName, count: int, forks: int) -> dict[str, Any]:
    # The default warm pools: a fork starts its sessions as a user's server would.
    manager = await ready_manager(lci_settings(new_state_dir(), limits=LIMITS, docker_warm_pool=2))
    spec = SessionSpec(backend=backend, limits=LIMITS)
    samples: dict[str, list[float]] = {
        "snapshot": [],
        "restore": [],
        "fork (one new session)": [],
        "fresh session + re-run the cells": [],
        "fork, data stack and a small namespace": [],
    }
    memory: dict[str, Any] = {}
    try:
        session = await _fresh(manager, spec)
        for index in range(count):
            took = await _timed(session.snapshot)
            samples["snapshot"].append(took)
            for snapshot in await session.list_snapshots():
                await session.delete_snapshot(snapshot.id)
            if index % 10 == 0:
                progress(f"{backend.value}: snapshot {index + 1}/{count}")
        kept = await session.snapshot()
        for index in range(count):
            await session.execute("total = -1")
            samples["restore"].append(await _timed(lambda: session.restore(kept.id)))
            if index % 10 == 0:
                progress(f"{backend.value}: restore {index + 1}/{count}")
        check = await session.execute("bool(total > 0)")
        assert check.result_text == "True", check
        memory["right_after_bytes"] = (await session.list_snapshots())[0].memory_bytes
        await session.execute(REWRITE)
        memory["after_rewriting_100MB_bytes"] = (await session.list_snapshots())[0].memory_bytes
        for index in range(forks):
            started = time.perf_counter()
            made = await manager.fork(session.id)
            samples["fork (one new session)"].append(time.perf_counter() - started)
            await manager.close(made[0].session.id)
            progress(f"{backend.value}: fork {index + 1}/{forks}")
        for index in range(forks):
            started = time.perf_counter()
            fresh = await _fresh(manager, spec)
            samples["fresh session + re-run the cells"].append(time.perf_counter() - started)
            await manager.close(fresh.id)
            progress(f"{backend.value}: fresh {index + 1}/{forks}")
        small = await manager.create(spec)
        await small.execute(SMALL)
        for index in range(count):
            started = time.perf_counter()
            made = await manager.fork(small.id)
            samples["fork, data stack and a small namespace"].append(time.perf_counter() - started)
            await manager.close(made[0].session.id)
            if index % 10 == 0:
                progress(f"{backend.value}: small fork {index + 1}/{count}")
    finally:
        await manager.close_all()
    figures: dict[str, Any] = {}
    for name, values in samples.items():
        figures[name] = {**summarize(values), "p95_ms": _p95(values)}
    return {"figures": figures, "memory": memory}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--docker", choices=["auto", "require", "skip"], default="auto")
    args = parser.parse_args()
    count, forks = (10, 3) if args.quick else (60, 10)
    backends = chosen_backends(args.docker)
    results = {b.value: asyncio.run(measure(b, count, forks)) for b in backends}
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "snapshots.json"
    document = {"machine": machine(), "mode": "quick" if args.quick else "full", **results}
    path.write_text(json.dumps(document, indent=2) + "\n")
    plot_groups(
        RESULTS / "snapshots.png",
        "Snapshot, restore, fork vs a fresh session re-running its cells (p50, ms)",
        {
            backend: {name: s["p50_ms"] for name, s in result["figures"].items()}
            for backend, result in results.items()
        },
    )
    print("\nWith the data stack and 100 MB of arrays (ms)" + " " * 14 + "p50       p95")
    for backend, result in results.items():
        for name, stats in result["figures"].items():
            print(f"  {backend:<10} {name:<36} {stats['p50_ms']:>9.2f} {stats['p95_ms']:>9.2f}")
        for name, value in result["memory"].items():
            shown = "n/a" if value is None else f"{value / (1 << 20):.1f} MiB"
            print(f"  {backend:<10} snapshot memory {name:<30} {shown}")
    print(f"\nresults: {path} and snapshots.png")


if __name__ == "__main__":
    main()
