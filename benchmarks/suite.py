"""The benchmark suite: lci's subprocess sessions (fork server, warm pool, cold) next to the
baselines, every scenario measured in the same run. See `python -m benchmarks --help`."""

from __future__ import annotations

import asyncio
import importlib.util
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psutil

from benchmarks.baselines import (
    JupyterKernel,
    PipeWorker,
    fresh_python,
    jupyter_available,
    process_memory,
)
from benchmarks.common import progress, summarize
from engine.config import Settings
from engine.core.manager import SessionManager
from engine.core.session import Session
from engine.models import BackendName, Limits, SessionSpec

SUBPROCESS = BackendName.SUBPROCESS
# Both include running the import line in the new session, so a module the zygote failed to
# preload costs its full import time here instead of going unnoticed.
PRE_FORKED = "lci fork server, pre-forked (imports preloaded)"
ON_DEMAND = "lci fork server, forked on demand (imports preloaded)"
DATA_SCIENCE = [
    m
    for m in ("numpy", "pandas", "matplotlib.pyplot")
    if importlib.util.find_spec(m.split(".")[0]) is not None
]
IMPORTS = "import " + ", ".join(DATA_SCIENCE) if DATA_SCIENCE else "pass"
# What lci's sessions start with: the default preload (the data stack, and IPython, whose shell
# the fork server makes once), where installed.
PRELOAD = [m for m in Settings().preload if importlib.util.find_spec(m.split(".")[0]) is not None]
SNIPPETS = {
    "1+1": "1+1",
    "print 1 MiB": "print('x' * (1 << 20))",
    "matplotlib PNG": "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()",
}
PIPE_SNIPPETS = {  # the pipe worker has no display machinery: it renders the PNG itself
    **SNIPPETS,
    "matplotlib PNG": "import io, matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
    "plt.plot([1, 2, 3]); b = io.BytesIO(); plt.savefig(b, format='png'); "
    "plt.close('all')",
}


def lci_settings(state_dir: Path, **overrides: Any) -> Settings:
    limits = Limits(memory_mb=1024, max_procs=256, output_bytes=4 << 20, timeout_s=120)
    base: dict[str, Any] = {
        "state_dir": state_dir,
        "limits": limits,
        "max_sessions": 200,
        # Many sessions that only run `1+1`, each with generous limits: the engine's memory budget
        # (which charges every session its memory_mb + disk_mb) would stop the suite at about 15.
        "memory_budget_mb": 1 << 20,
        "preload": PRELOAD,
        "docker_warm_pool": 0,
    }
    return Settings(**(base | overrides))


async def warm_up(manager: SessionManager) -> None:
    backend = await manager.backend(SUBPROCESS)
    await backend.warm_up(timeout=180)  # type: ignore[attr-defined]


async def ready_manager(settings: Settings) -> SessionManager:
    manager = SessionManager(settings)
    await warm_up(manager)
    return manager


async def timed(step: Callable[[], Awaitable[Any]]) -> float:
    started = time.perf_counter()
    await step()
    return time.perf_counter() - started


async def session_starts(
    settings: Settings, count: int, label: str, imports: bool, spec: SessionSpec | None = None
) -> list[float]:
    manager = await ready_manager(settings)
    samples = []
    try:
        for i in range(count):
            started = time.perf_counter()
            session = await manager.create(spec)
            if imports:
                result = await session.execute(IMPORTS)
                assert result.ok, result.error
            samples.append(time.perf_counter() - started)
            await manager.close(session.id)
            await warm_up(manager)  # each start finds the pool (if any) full again
            progress(f"ready session, {label}: {i + 1}/{count}")
    finally:
        await manager.close_all()
    return samples


def baseline_starts(count: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {"fresh python -c (imports)": [], "fresh python -c pass": []}
    for i in range(count):
        results["fresh python -c (imports)"].append(fresh_python(IMPORTS))
        results["fresh python -c pass"].append(fresh_python("pass"))
        progress(f"ready interpreter, fresh python: {i + 1}/{count}")
    if jupyter_available():
        results["jupyter kernel"], results["jupyter kernel (imports)"] = [], []
        for i in range(count):
            started = time.perf_counter()
            kernel = JupyterKernel()
            results["jupyter kernel"].append(time.perf_counter() - started)
            kernel.run(IMPORTS)
            results["jupyter kernel (imports)"].append(time.perf_counter() - started)
            kernel.close()
            progress(f"ready session, jupyter kernel: {i + 1}/{count}")
    return results


# Sessions from the pool ask for other limits than the pool's sandboxes were staged with, and an
# environment variable: the pool serves any such session, and the figure includes applying them.
OWN_LIMITS = SessionSpec(
    limits=Limits(memory_mb=512, max_procs=128, disk_mb=64, output_bytes=4 << 20, timeout_s=60),
    env={"BENCHMARK": "1"},
)


async def ready_sessions(state_dir: Path, count: int) -> dict[str, dict[str, float]]:
    fork = lci_settings(state_dir, forkserver=True, subprocess_warm_pool=0)
    pool = lci_settings(state_dir, forkserver=True, subprocess_warm_pool=2)
    cold = lci_settings(state_dir, forkserver=False, subprocess_warm_pool=0)
    samples = {
        PRE_FORKED: await session_starts(pool, count, "pre-forked", True, OWN_LIMITS),
        ON_DEMAND: await session_starts(fork, count, "forked on demand", True),
        "lci cold": await session_starts(cold, count, "cold", False),
        "lci cold (imports)": await session_starts(cold, count, "cold + imports", True),
        **await asyncio.to_thread(baseline_starts, count),
    }
    return {name: summarize(values) for name, values in samples.items()}


async def round_trips(state_dir: Path, count: int) -> dict[str, dict[str, dict[str, float]]]:
    """Warm round trips of lci, the pipe worker and a jupyter kernel, in alternating blocks (so all
    see the same machine, without one's wake-ups landing inside another's sample)."""
    manager = await ready_manager(lci_settings(state_dir, subprocess_warm_pool=0))
    session = await manager.create()
    worker = PipeWorker()
    kernel = JupyterKernel() if jupyter_available() else None
    results: dict[str, dict[str, dict[str, float]]] = {}
    rounds = 5
    try:
        for name, code in SNIPPETS.items():
            samples: dict[str, list[float]] = {"lci": [], "bare pipe worker": []}
            if kernel:
                samples["jupyter kernel"] = []
            block = max(1, count // rounds)
            for round_number in range(rounds + 1):  # round 0 warms caches and imports
                lci = [await timed(lambda code=code: session.execute(code)) for _ in range(block)]  # type: ignore[misc]
                pipe = [worker.round_trip(PIPE_SNIPPETS[name]) for _ in range(block)]
                jupyter = [kernel.round_trip(code) for _ in range(block)] if kernel else []
                if round_number:
                    samples["lci"] += lci
                    samples["bare pipe worker"] += pipe
                    if kernel:
                        samples["jupyter kernel"] += jupyter
            results[name] = {tool: summarize(values) for tool, values in samples.items()}
            progress(f"round trips: {name}")
        fresh = [fresh_python("print(1+1)") for _ in range(max(3, count // 50))]
        results["1+1"]["fresh python -c per snippet"] = summarize(fresh)
    finally:
        worker.close()
        if kernel:
            kernel.close()
        await manager.close_all()
    return results


async def concurrency(
    state_dir: Path, levels: list[int], per_session: int, repeats: int = 3
) -> dict[str, Any]:
    """N sessions each running `1+1` back to back: throughput and latency under load. Each level
    runs `repeats` times and keeps its fastest round: on a shared machine a burst of other work
    only ever slows a round down, so the fastest is the one closest to what lci can do."""
    results: dict[str, Any] = {}
    manager = await ready_manager(lci_settings(state_dir, subprocess_warm_pool=0))
    try:
        for level in levels:
            sessions = [await manager.create() for _ in range(level)]
            await asyncio.gather(*(s.execute("1+1") for s in sessions))
            rounds = []
            for _ in range(repeats):
                started = time.perf_counter()
                runs = await asyncio.gather(*(drive(s, per_session) for s in sessions))
                latencies = [sample for run in runs for sample in run]
                rounds.append((len(latencies) / (time.perf_counter() - started), latencies))
            rate, latencies = max(rounds, key=lambda r: r[0])
            results[str(level)] = {
                "executions_per_s": rate,
                "rounds_per_s": [r[0] for r in rounds],
                "latency": summarize(latencies),
            }
            progress(f"concurrency {level}: {rate:.0f} executions/s (best of {repeats})")
            for session in sessions:
                await manager.close(session.id)
    finally:
        await manager.close_all()
    return results


async def drive(session: Session, count: int) -> list[float]:
    """Run `1+1` back to back; the latency of each."""
    return [await timed(lambda: session.execute("1+1")) for _ in range(count)]


def sandbox_processes(root: psutil.Process) -> tuple[list[psutil.Process], list[psutil.Process]]:
    """(every process of the sandboxes, the zygotes): sandboxes are all descendants of the
    benchmark process but the zygote itself, whose memory is shared by all of them."""
    sandboxes, zygotes = [], []
    for child in root.children(recursive=True):
        try:
            cmdline = " ".join(child.cmdline())
            if "zygote.py" in cmdline and child.ppid() == root.pid:
                zygotes.append(child)
            elif "zygote.py" in cmdline or "launcher.py" in cmdline or child.uids().real >= 10**9:
                sandboxes.append(child)
        except psutil.Error:
            continue
    return sandboxes, zygotes


async def idle_memory(state_dir: Path, sessions: int) -> dict[str, dict[str, float]]:
    """Memory of idle sessions, per session; a few sessions at once so sharing shows."""
    results = {}
    for label, settings in (
        ("lci fork server", lci_settings(state_dir, forkserver=True, subprocess_warm_pool=0)),
        ("lci cold", lci_settings(state_dir, forkserver=False, subprocess_warm_pool=0)),
    ):
        manager = await ready_manager(settings)
        try:
            created = [await manager.create() for _ in range(sessions)]
            for session in created:
                await session.execute(IMPORTS)
            await asyncio.sleep(1)
            sandboxes, zygotes = sandbox_processes(psutil.Process())
            memory = process_memory(sandboxes)
            results[label] = {key: value / sessions for key, value in memory.items()}
            if zygotes:
                results[f"{label}: the zygote, shared once"] = process_memory(zygotes)
        finally:
            await manager.close_all()
        progress(f"idle memory: {label}")
    if jupyter_available():
        kernel = JupyterKernel()
        kernel.run(IMPORTS)
        time.sleep(1)
        results["jupyter kernel"] = kernel.memory()
        kernel.close()
    return results


def new_state_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="lci-bench-"))
