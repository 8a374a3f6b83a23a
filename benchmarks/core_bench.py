"""Subprocess backend: warm `1+1` round trip through the public API (async and sync), time to a ready
session, and idle session memory, next to a bare persistent pipe worker measured in the same run.

    python -m benchmarks.core_bench [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

import psutil

from benchmarks.baselines import PipeWorker
from benchmarks.common import progress, save, summarize
from engine import SessionManager, blocking
from engine.config import Settings
from engine.models import SessionSpec


def cold_settings() -> Settings:
    """Sessions started from scratch, one at a time: the fork server and the warm pool are
    measured by the suite (`python -m benchmarks`)."""
    return Settings(forkserver=False, subprocess_warm_pool=0, docker_warm_pool=0)


def sandbox_memory() -> dict[str, float]:
    """USS and RSS of every process of the benchmark's sandboxes (launcher, init, agent)."""
    uss = rss = 0
    processes = 0
    for child in psutil.Process().children(recursive=True):
        try:
            cmdline = " ".join(child.cmdline())
            if "launcher.py" in cmdline or "lci_agent" in cmdline:
                info = child.memory_full_info()
                uss, rss, processes = uss + info.uss, rss + info.rss, processes + 1
        except psutil.Error:
            continue
    mib = 1 << 20
    return {"uss_mib": uss / mib, "rss_mib": rss / mib, "processes": processes}


async def async_api(count: int, starts: int, floor: PipeWorker) -> dict[str, object]:
    """Round trips are measured in rounds that alternate with the floor's, so both see the same
    machine: on a shared 2-core host the absolute figures drift by 2x within a minute."""
    async with SessionManager(cold_settings()) as manager:
        start_samples = []
        for i in range(starts):
            started = time.perf_counter()
            session = await manager.create(SessionSpec())
            start_samples.append(time.perf_counter() - started)
            await manager.close(session.id)
            progress(f"ready session: {i + 1}/{starts}")
        session = await manager.create(SessionSpec())
        await asyncio.sleep(0.5)
        memory = sandbox_memory()
        lci: list[float] = []
        pipe: list[float] = []
        rounds = 10
        for round_number in range(rounds + 1):
            batch_lci, batch_pipe = [], []
            for _ in range(count // rounds):
                started = time.perf_counter()
                await session.execute("1+1")
                batch_lci.append(time.perf_counter() - started)
                batch_pipe.append(floor.round_trip())
            if round_number:  # the first round warms both up
                lci += batch_lci
                pipe += batch_pipe
            progress(f"1+1 round trips, async API and pipe worker: round {round_number}/{rounds}")
    return {
        "round_trip": lci,
        "floor": pipe,
        "start": start_samples,
        "memory": memory,
        "isolation": session.info().isolation.model_dump(),
    }


def sync_api(count: int, floor: PipeWorker) -> tuple[list[float], list[float]]:
    lci, pipe = [], []
    with blocking(SessionManager(cold_settings())) as manager:
        session = manager.create()
        for index in range(count + 100):
            started = time.perf_counter()
            session.execute("1+1")
            elapsed = time.perf_counter() - started
            floor_elapsed = floor.round_trip()
            if index >= 100:
                lci.append(elapsed)
                pipe.append(floor_elapsed)
    progress("1+1 round trips, sync API: done")
    return lci, pipe


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small sample counts (CI)")
    args = parser.parse_args()
    count, starts = (300, 3) if args.quick else (3000, 20)
    progress(f"core benchmark: {count} round trips, {starts} session starts, pid {os.getpid()}")
    worker = PipeWorker()
    try:
        measured = asyncio.run(async_api(count, starts, worker))
        sync_samples, sync_floor_samples = sync_api(count, worker)
    finally:
        worker.close()
    floor = summarize(measured["floor"])  # type: ignore[arg-type]
    round_trip = summarize(measured["round_trip"])  # type: ignore[arg-type]
    sync = summarize(sync_samples)
    sync_floor = summarize(sync_floor_samples)
    start = summarize(measured["start"])  # type: ignore[arg-type]
    ratio = round_trip["p50_ms"] / floor["p50_ms"]
    results = {
        "bare_pipe_worker_1plus1": floor,
        "async_api_1plus1": round_trip,
        "sync_api_1plus1": sync,
        "ready_session": start,
        "idle_session_memory": measured["memory"],
        "isolation": measured["isolation"],
        "ratios": {
            "async_round_trip_vs_pipe_worker_p50": ratio,
            "sync_round_trip_vs_pipe_worker_p50": sync["p50_ms"] / sync_floor["p50_ms"],
        },
        "targets": {"async_round_trip_vs_pipe_worker_p50": "<= 4"},
    }
    path = save(
        "core_subprocess",
        results,
        {
            "bare pipe worker 1+1 (p50)": floor["p50_ms"],
            "lci async API 1+1 (p50)": round_trip["p50_ms"],
            "lci sync API 1+1 (p50)": sync["p50_ms"],
            "ready session (p50)": start["p50_ms"],
        },
        "milliseconds (log scale)",
    )
    memory = measured["memory"]
    print(f"bare pipe worker 1+1     p50 {floor['p50_ms']:.3f} ms  p99 {floor['p99_ms']:.3f} ms")
    print(
        f"lci async API 1+1        p50 {round_trip['p50_ms']:.3f} ms  "
        f"p99 {round_trip['p99_ms']:.3f} ms  ({ratio:.2f}x the pipe worker; target <= 4x)"
    )
    print(f"lci sync API 1+1         p50 {sync['p50_ms']:.3f} ms  p99 {sync['p99_ms']:.3f} ms")
    print(f"ready session            p50 {start['p50_ms']:.1f} ms  p99 {start['p99_ms']:.1f} ms")
    print(
        f"idle session memory      USS {memory['uss_mib']:.1f} MiB  RSS {memory['rss_mib']:.1f} MiB "  # type: ignore[index]
        f"over {memory['processes']} processes"
    )  # type: ignore[index]
    print(f"results: {path} (+ .png)")


if __name__ == "__main__":
    main()
