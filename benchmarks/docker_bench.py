"""Docker backend: session start cold and from the warm pool (each also with numpy, pandas and
matplotlib imported, which pooled containers do while they wait), warm `1+1` round trip, idle memory
per container, and 1 MiB and 50 MiB uploads and downloads through the session API (which go through
the daemon); next to the subprocess backend's warm round trip and file transfers (a host directory,
as the docker backend's workdir was before it became a volume) and a bare `docker run --rm IMAGE
python3 -c pass`, all measured in the same run.

    python -m benchmarks.docker_bench [--quick]

Targets: warm round trip within 3x the subprocess backend's, pool claim p50 within 10 ms, cold start
no slower than the bare `docker run`, file transfers within 3x the host directory's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import docker
import psutil

from benchmarks.common import progress, save, summarize
from engine.config import Settings
from engine.core.backends.docker.backend import DockerBackend
from engine.core.manager import SessionManager
from engine.core.session import Session
from engine.models import BackendName, SessionSpec

DOCKER = BackendName.DOCKER
MIB = 1 << 20
IMPORTS = "import numpy, pandas, matplotlib.pyplot"  # all in the sandbox image
FIGURES = (
    "subprocess_round_trip_1plus1",
    "docker_round_trip_1plus1",
    "docker_pool_claim",
    "docker_pool_claim_with_imports",
    "docker_cold_start",
    "docker_cold_start_with_imports",
    "bare_docker_run_python3",
)
TRANSFER_SIZES = {"1MiB": MIB, "50MiB": 50 * MIB}
TRANSFERS = tuple(
    f"{backend}_{way}_{size}"
    for size in TRANSFER_SIZES
    for way in ("upload", "download")
    for backend in ("subprocess", "docker")
)
MEMORY = (
    ("idle container memory", "idle_container_memory"),
    ("claimed pool container", "claimed_pool_container_memory"),
)
READY = {  # the start scenarios and their baseline, for the suite's plot of ready sessions
    "lci docker, warm pool (imports preloaded)": "docker_pool_claim",
    "lci docker, cold": "docker_cold_start",
    "lci docker, cold (imports)": "docker_cold_start_with_imports",
    "docker run python3 -c pass": "bare_docker_run_python3",
}


def unavailable(settings: Settings) -> str | None:
    """Why the docker scenarios cannot run here (no daemon, no image), or None."""
    from engine.core.backends.docker.api import unavailable_reason

    return unavailable_reason(settings.docker_image)


def bare_docker_run(image: str) -> float:
    started = time.perf_counter()
    subprocess.run(["docker", "run", "--rm", image, "python3", "-c", "pass"], check=True)
    return time.perf_counter() - started


async def ready_with_imports(manager: SessionManager) -> tuple[Session, float, float]:
    """A new session, the time to create it, and the time until it has the modules imported."""
    started = time.perf_counter()
    session = await manager.create(SessionSpec(backend=DOCKER))
    created = time.perf_counter() - started
    result = await session.execute(IMPORTS)
    assert result.ok, result.error
    return session, created, time.perf_counter() - started


async def starts(settings: Settings, count: int) -> dict[str, list[float]]:
    """Cold session starts (no pool) alternating with bare `docker run`s, so both see the same
    machine."""
    cold, cold_imports, bare = [], [], []
    async with SessionManager(settings.model_copy(update={"docker_warm_pool": 0})) as manager:
        await manager.close((await manager.create(SessionSpec(backend=DOCKER))).id)  # warm-up
        for i in range(count):
            session, created, imported = await ready_with_imports(manager)
            cold.append(created)
            cold_imports.append(imported)
            await manager.close(session.id)
            bare.append(await asyncio.to_thread(bare_docker_run, settings.docker_image))
            progress(f"cold start and bare docker run: {i + 1}/{count}")
    return {"cold": cold, "cold_imports": cold_imports, "bare": bare}


async def claims(settings: Settings, count: int) -> dict[str, Any]:
    """Session starts that claim a warm container; the pool is refilled between samples. Also the
    memory of a claimed container, which holds the preloaded modules."""
    claimed, claimed_imports = [], []
    memory: dict[str, float] = {}
    async with SessionManager(settings.model_copy(update={"docker_warm_pool": 2})) as manager:
        backend = await manager.backend(DOCKER)
        assert isinstance(backend, DockerBackend)
        for i in range(count):
            assert await backend.warm_up(timeout=120)
            session, created, imported = await ready_with_imports(manager)
            claimed.append(created)
            claimed_imports.append(imported)
            if not memory:
                memory = container_memory(session)
            await manager.close(session.id)
            if (i + 1) % max(1, count // 4) == 0:
                progress(f"pool claims: {i + 1}/{count}")
    return {"claim": claimed, "claim_imports": claimed_imports, "memory": memory}


async def round_trips(settings: Settings, count: int) -> dict[str, Any]:
    """Warm `1+1` on a docker and a subprocess session, in alternating rounds; plus the docker
    session's idle memory."""
    async with SessionManager(settings.model_copy(update={"docker_warm_pool": 0})) as manager:
        sessions = {
            "docker": await manager.create(SessionSpec(backend=DOCKER)),
            "subprocess": await manager.create(SessionSpec(backend=BackendName.SUBPROCESS)),
        }
        await asyncio.sleep(1.0)
        memory = container_memory(sessions["docker"])
        samples: dict[str, list[float]] = {name: [] for name in sessions}
        rounds = 10
        for round_number in range(rounds + 1):
            for name, session in sessions.items():
                batch = [await timed_execute(session) for _ in range(count // rounds)]
                if round_number:  # the first round warms both up
                    samples[name] += batch
            progress(f"1+1 round trips, docker and subprocess: round {round_number}/{rounds}")
    return {"samples": samples, "memory": memory}


async def file_transfers(settings: Settings, count: int) -> dict[str, list[float]]:
    """Uploads and downloads of 1 MiB and 50 MiB through the session API, on a docker and a
    subprocess session in turn (alternating, so both see the same machine)."""
    limits = settings.limits.model_copy(update={"disk_mb": 256})
    samples: dict[str, list[float]] = {name: [] for name in TRANSFERS}
    async with SessionManager(settings.model_copy(update={"docker_warm_pool": 0})) as manager:
        sessions = {
            backend: await manager.create(SessionSpec(backend=BackendName(backend), limits=limits))
            for backend in ("docker", "subprocess")
        }
        for size_name, size in TRANSFER_SIZES.items():
            data = os.urandom(size)
            for i in range(count + 1):
                for backend, session in sessions.items():
                    started = time.perf_counter()
                    await session.write_file(f"blob-{i % 2}", data)
                    uploaded = time.perf_counter()
                    back = await session.read_file(f"blob-{i % 2}", max_bytes=size)
                    downloaded = time.perf_counter()
                    assert back == data
                    if i:  # the first round warms up
                        samples[f"{backend}_upload_{size_name}"].append(uploaded - started)
                        samples[f"{backend}_download_{size_name}"].append(downloaded - uploaded)
            progress(f"file transfers of {size_name}: {count} each way")
    return samples


async def timed_execute(session: Session) -> float:
    started = time.perf_counter()
    result = await session.execute("1+1")
    elapsed = time.perf_counter() - started
    assert result.result_text == "2", result
    return elapsed


def container_memory(session: Session) -> dict[str, float]:
    """The container's own memory as its cgroup counts it (no page cache), the USS/RSS of its
    processes, and the USS of the containerd shim that each container costs the host."""
    client = docker.from_env()
    try:
        # By id: a container claimed from the pool keeps its lci.session=pool label.
        container = client.containers.get(session._sandbox.container_id)  # type: ignore[union-attr]
        stats = container.stats(stream=False, one_shot=True)["memory_stats"]
        init = psutil.Process(container.attrs["State"]["Pid"])
    finally:
        client.close()
    detail = stats.get("stats", {})
    cache = detail.get("total_inactive_file", detail.get("inactive_file", detail.get("cache", 0)))
    processes = [init, *init.children(recursive=True)]
    infos = [p.memory_full_info() for p in processes]
    shim = init.parent()
    return {
        "cgroup_usage_mib": (stats["usage"] - cache) / MIB,
        "processes_uss_mib": sum(i.uss for i in infos) / MIB,
        "processes_rss_mib": sum(i.rss for i in infos) / MIB,
        "processes": len(processes),
        "containerd_shim_uss_mib": shim.memory_full_info().uss / MIB if shim else 0.0,
    }


def report(measured: dict[str, Any]) -> dict[str, Any]:
    figures = {name: summarize(samples) for name, samples in measured["samples"].items()}
    transfer_ratios = {
        f"docker_vs_host_dir_{way}_{size}_p50": figures[f"docker_{way}_{size}"]["p50_ms"]
        / figures[f"subprocess_{way}_{size}"]["p50_ms"]
        for size in TRANSFER_SIZES
        for way in ("upload", "download")
    }
    ratios = {
        **transfer_ratios,
        "docker_vs_subprocess_round_trip_p50": figures["docker_round_trip_1plus1"]["p50_ms"]
        / figures["subprocess_round_trip_1plus1"]["p50_ms"],
        "cold_start_vs_bare_docker_run_p50": figures["docker_cold_start"]["p50_ms"]
        / figures["bare_docker_run_python3"]["p50_ms"],
    }
    return {
        **figures,
        "idle_container_memory": measured["memory"],
        "claimed_pool_container_memory": measured["pooled_memory"],
        "ratios": ratios,
        "targets": {
            "docker_vs_subprocess_round_trip_p50": "<= 3",
            "pool_claim_p50_ms": "<= 10",
            "cold_start_vs_bare_docker_run_p50": "<= 1",
            "docker_vs_host_dir_transfers_p50": "<= 3",
        },
        "met": {
            "round_trip": ratios["docker_vs_subprocess_round_trip_p50"] <= 3,
            "pool_claim": figures["docker_pool_claim"]["p50_ms"] <= 10,
            "cold_start": ratios["cold_start_vs_bare_docker_run_p50"] <= 1,
            "file_transfers": all(ratio <= 3 for ratio in transfer_ratios.values()),
        },
    }


def print_figures(results: dict[str, Any], path: Path) -> None:
    for name in (*FIGURES, *TRANSFERS):
        figure = results[name]
        print(f"{name:32} p50 {figure['p50_ms']:9.3f} ms  p99 {figure['p99_ms']:9.3f} ms")
    for label, key in MEMORY:
        memory = results[key]
        print(
            f"{label:32} cgroup {memory['cgroup_usage_mib']:.1f} MiB, processes USS "
            f"{memory['processes_uss_mib']:.1f} MiB / RSS {memory['processes_rss_mib']:.1f} MiB, "
            f"containerd shim USS {memory['containerd_shim_uss_mib']:.1f} MiB"
        )
    ratios, met = results["ratios"], results["met"]
    print(
        f"docker/subprocess round trip {ratios['docker_vs_subprocess_round_trip_p50']:.2f}x "
        f"(target <= 3x: {'met' if met['round_trip'] else 'MISSED'}); pool claim "
        f"{'met' if met['pool_claim'] else 'MISSED'} (target <= 10 ms); cold start / bare docker "
        f"run {ratios['cold_start_vs_bare_docker_run_p50']:.2f}x (target <= 1: "
        f"{'met' if met['cold_start'] else 'MISSED'})"
    )
    transfers = ", ".join(
        f"{name.removeprefix('docker_vs_host_dir_').removesuffix('_p50')} {ratio:.2f}x"
        for name, ratio in ratios.items()
        if name.startswith("docker_vs_host_dir_")
    )
    print(
        f"docker/host directory file transfers: {transfers} "
        f"(target <= 3x: {'met' if met['file_transfers'] else 'MISSED'})"
    )
    print(f"results: {path} (+ .png)")


async def measure(settings: Settings, quick: bool) -> dict[str, Any]:
    count, n_starts, n_claims, n_files = (300, 5, 20, 3) if quick else (3000, 20, 100, 20)
    trips = await round_trips(settings, count)
    transfers = await file_transfers(settings, n_files)
    started = await starts(settings, n_starts)
    claimed = await claims(settings, n_claims)
    samples = {
        "subprocess_round_trip_1plus1": trips["samples"]["subprocess"],
        "docker_round_trip_1plus1": trips["samples"]["docker"],
        "docker_pool_claim": claimed["claim"],
        "docker_pool_claim_with_imports": claimed["claim_imports"],
        "docker_cold_start": started["cold"],
        "docker_cold_start_with_imports": started["cold_imports"],
        "bare_docker_run_python3": started["bare"],
        **transfers,
    }
    return {"samples": samples, "memory": trips["memory"], "pooled_memory": claimed["memory"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small sample counts (CI)")
    args = parser.parse_args()
    settings = Settings()
    progress(f"docker benchmark with image {settings.docker_image}, pid {os.getpid()}")
    results = report(asyncio.run(measure(settings, args.quick)))
    bars = {
        "subprocess 1+1 round trip (p50)": results["subprocess_round_trip_1plus1"]["p50_ms"],
        "docker 1+1 round trip (p50)": results["docker_round_trip_1plus1"]["p50_ms"],
        "docker pool claim (p50)": results["docker_pool_claim"]["p50_ms"],
        "docker pool claim + imports (p50)": results["docker_pool_claim_with_imports"]["p50_ms"],
        "docker cold start (p50)": results["docker_cold_start"]["p50_ms"],
        "docker cold start + imports (p50)": results["docker_cold_start_with_imports"]["p50_ms"],
        "bare docker run python3 (p50)": results["bare_docker_run_python3"]["p50_ms"],
        **{f"{name} (p50)": results[name]["p50_ms"] for name in TRANSFERS},
    }
    path = save("docker_backend", results, bars, "milliseconds (log scale)")
    print_figures(results, path)


if __name__ == "__main__":
    main()
