"""Subprocess backend: warm `1+1` round trip through the public API (async and sync), time to a ready
session, and idle session memory, next to a bare persistent pipe worker measured in the same run.

    python -m benchmarks.core_bench [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time

import psutil

from benchmarks.common import progress, save, summarize, timed_loop
from engine import SessionManager, blocking
from engine.models import SessionSpec

# The floor: the least a persistent code-execution worker does. It takes a JSON request with the code
# over a pipe, runs it in a kept namespace with stdout captured, and answers with a JSON line holding
# the output and the value of a final expression.
_PIPE_WORKER = """
import io, json, sys, contextlib
namespace = {}
read, write = sys.stdin.buffer.readline, sys.stdout.buffer.write
while line := read():
    code = json.loads(line)["code"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            value = repr(eval(compile(code, "<cell>", "eval"), namespace))
        except SyntaxError:
            exec(compile(code, "<cell>", "exec"), namespace)
            value = None
    write(json.dumps({"stdout": out.getvalue(), "value": value}).encode() + b"\\n")
    sys.stdout.flush()
"""


def bare_pipe_worker(count: int) -> list[float]:
    worker = subprocess.Popen(
        [sys.executable, "-I", "-c", _PIPE_WORKER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        bufsize=0,
    )
    assert worker.stdin is not None and worker.stdout is not None
    stdin, stdout = worker.stdin, worker.stdout
    request = json.dumps({"code": "1+1"}).encode() + b"\n"

    def step() -> None:
        stdin.write(request)
        assert json.loads(stdout.readline())["value"] == "2"

    timed_loop(step, 200, "pipe worker warm-up")
    samples = timed_loop(step, count, "bare pipe worker")
    stdin.close()
    worker.wait()
    return samples


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


async def async_api(count: int, starts: int) -> dict[str, object]:
    async with SessionManager() as manager:
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
        for _ in range(200):
            await session.execute("1+1")
        samples = []
        for i in range(count):
            started = time.perf_counter()
            await session.execute("1+1")
            samples.append(time.perf_counter() - started)
            if (i + 1) % max(1, count // 4) == 0:
                progress(f"async API 1+1: {i + 1}/{count}")
    return {
        "round_trip": samples,
        "start": start_samples,
        "memory": memory,
        "isolation": session.info().isolation.model_dump(),
    }


def sync_api(count: int) -> list[float]:
    with blocking(SessionManager()) as manager:
        session = manager.create()
        timed_loop(lambda: session.execute("1+1"), 100, "sync API warm-up")
        return timed_loop(lambda: session.execute("1+1"), count, "sync API 1+1")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small sample counts (CI)")
    args = parser.parse_args()
    count, starts = (300, 3) if args.quick else (3000, 20)
    progress(f"core benchmark: {count} round trips, {starts} session starts, pid {os.getpid()}")
    floor = summarize(bare_pipe_worker(count))
    measured = asyncio.run(async_api(count, starts))
    round_trip = summarize(measured["round_trip"])  # type: ignore[arg-type]
    sync = summarize(sync_api(count))
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
            "sync_round_trip_vs_pipe_worker_p50": sync["p50_ms"] / floor["p50_ms"],
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
