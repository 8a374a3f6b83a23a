"""What gVisor costs the docker backend: runc against runsc on one daemon, in the same run, in
alternating samples so both see the same machine. Measures the time to a ready session (no warm
pool: a container is created and started each time), the warm `1 + 1` round trip, and a pandas
groupby over 1e6 rows (the data built in the cell, so its allocations and page faults count).

    python -m benchmarks.runtime_bench [--quick] [--runtime runsc] [--current-daemon]

By default it starts a Docker daemon of its own (root; `benchmarks.soak.daemon.PrivateDaemon`,
leaving the host's daemon alone) with Debian's runsc registered, and copies the sandbox image into
it. With --current-daemon it uses the daemon DOCKER_HOST names, which must know both runtimes
(docs/security.md, gVisor, shows the daemon.json).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import TypeVar

from benchmarks.common import progress, save, summarize
from benchmarks.soak.daemon import PrivateDaemon
from engine import SessionManager
from engine.config import Settings
from engine.models import BackendName, Limits, SessionSpec

SPEC = SessionSpec(backend=BackendName.DOCKER, limits=Limits(memory_mb=1024, timeout_s=120))
GROUPBY = (
    "import numpy as np, pandas as pd\n"
    "frame = pd.DataFrame({'k': np.arange(1_000_000) % 1000, 'v': np.ones(1_000_000)})\n"
    "total = frame.groupby('k')['v'].sum()\n"
    "assert total.iloc[0] == 1000\n"
)
METRICS = ("start", "round_trip", "groupby")
T = TypeVar("T")


async def _timed(samples: list[float], coroutine: Awaitable[T]) -> T:
    started = time.perf_counter()
    result = await coroutine
    samples.append(time.perf_counter() - started)
    return result


async def measure(
    runtimes: tuple[str, str], starts: int, trips: int, groupbys: int
) -> dict[str, dict[str, list[float]]]:
    samples: dict[str, dict[str, list[float]]] = {
        name: {metric: [] for metric in METRICS} for name in runtimes
    }
    managers = {
        name: SessionManager(Settings(docker_runtime=name, docker_warm_pool=0)) for name in runtimes
    }
    async with managers[runtimes[0]] as first, managers[runtimes[1]] as second:
        opened = {runtimes[0]: first, runtimes[1]: second}
        for i in range(starts):
            for name in runtimes if i % 2 else runtimes[::-1]:
                session = await _timed(samples[name]["start"], opened[name].create(SPEC))
                await opened[name].close(session.id)
        progress(f"starts: {starts} per runtime")
        sessions = {name: await manager.create(SPEC) for name, manager in opened.items()}
        for session in sessions.values():
            assert (await session.execute("import pandas")).ok  # imports outside the timing
        for i in range(trips + 1):
            for name in runtimes if i % 2 else runtimes[::-1]:
                trip: list[float] = samples[name]["round_trip"] if i else []  # first: warm-up
                result = await _timed(trip, sessions[name].execute("1 + 1"))
                assert result.result_text == "2", result
        progress(f"round trips: {trips} per runtime")
        for i in range(groupbys):
            for name in runtimes if i % 2 else runtimes[::-1]:
                result = await _timed(samples[name]["groupby"], sessions[name].execute(GROUPBY))
                assert result.ok, result
        progress(f"groupbys: {groupbys} per runtime")
    return samples


@contextlib.contextmanager
def _private_daemon(runtime: str) -> Iterator[None]:
    base = Path(tempfile.mkdtemp(prefix="lci-rt-", dir="/tmp"))  # short: a socket path
    runtimes: dict[str, dict[str, object]] = {
        runtime: {"path": "/usr/bin/runsc", "runtimeArgs": ["--network=none"]}
    }
    daemon = PrivateDaemon(base, runtimes=runtimes)
    try:
        daemon.start()
        daemon.load(Settings().docker_image)
        os.environ["DOCKER_HOST"] = daemon.host
        yield
    finally:
        daemon.stop()
        shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small sample counts (CI)")
    parser.add_argument("--runtime", default="runsc", help="the runtime set against runc")
    parser.add_argument(
        "--current-daemon", action="store_true", help="use DOCKER_HOST's daemon, start none"
    )
    args = parser.parse_args()
    starts, trips, groupbys = (4, 30, 3) if args.quick else (20, 300, 10)
    runtimes = ("runc", args.runtime)
    with contextlib.ExitStack() as stack:
        if not args.current_daemon:
            stack.enter_context(_private_daemon(args.runtime))
        samples = asyncio.run(measure(runtimes, starts, trips, groupbys))
    results: dict[str, object] = {"runtimes": list(runtimes)}
    bars = {}
    for metric in METRICS:
        base, other = (summarize(samples[name][metric]) for name in runtimes)
        results[metric] = {
            runtimes[0]: base,
            runtimes[1]: other,
            "ratio_p50": other["p50_ms"] / base["p50_ms"],
        }
        print(
            f"{metric:<11} p50 {runtimes[0]} {base['p50_ms']:9.2f} ms  {runtimes[1]} "
            f"{other['p50_ms']:9.2f} ms  ratio {other['p50_ms'] / base['p50_ms']:.2f}"
        )
        bars.update(
            {f"{metric} {name}": summarize(samples[name][metric])["p50_ms"] for name in runtimes}
        )
    save("runtime", results, bars, "p50 ms")


if __name__ == "__main__":
    main()
