"""One soak: a real `lci serve` on loopback, the scripted model, N clients on every surface for a
bounded time, faults injected at random, and the server's resources measured before and after.

The server's state dir is a private tmpfs (root) so the disk-full fault fills that alone; its model
server read timeout is short, so a hung model ends a round in seconds, not minutes. With
`private_daemon`, the docker backend runs on a Docker daemon of the soak's own (see `daemon.py`),
which the daemon_restart fault restarts without touching anyone else's containers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import progress, summarize
from benchmarks.soak.clients import Client, Stats
from benchmarks.soak.daemon import PrivateDaemon
from benchmarks.soak.faults import FAULTS, Target, faults_for
from benchmarks.soak.model import SoakModel
from benchmarks.soak.resources import Snapshot, docker_leftovers, leaks, snapshot
from tests.server.helpers import LciServer

STATE_TMPFS_MB = 256
UPSTREAM_TIMEOUT_S = 5.0


@dataclass
class SoakConfig:
    backend: str = "subprocess"
    clients: int = 8
    duration_s: float = 30.0
    fault_every_s: float = 3.0
    faults: list[str] | None = None  # None: every fault that applies to the backend
    client_timeout_s: float = 90.0
    seed: int = 1
    private_daemon: bool = False  # docker: a daemon of the soak's own (needed for daemon_restart)
    env: dict[str, str] = field(default_factory=dict)


@contextlib.contextmanager
def private_state_dir() -> Iterator[Path]:
    """A directory on its own small tmpfs when root (so disk_full fills it alone), else a plain
    temporary directory."""
    with tempfile.TemporaryDirectory(prefix="lci-soak-") as base:
        path = Path(base) / "state"
        path.mkdir()
        mounted = (
            subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"size={STATE_TMPFS_MB}m,mode=0711", "tmpfs", path],
                capture_output=True,
                check=False,
            ).returncode
            == 0
        )
        try:
            yield path
        finally:
            if mounted:
                subprocess.run(["umount", "-l", path], capture_output=True, check=False)


@contextlib.contextmanager
def docker_daemon(config: SoakConfig) -> Iterator[PrivateDaemon | None]:
    """The soak's own Docker daemon when the config asks for one, used by everything in this
    process (the server, `docker` commands) through DOCKER_HOST; else None."""
    if not (config.private_daemon and config.backend == "docker"):
        yield None
        return
    # Short: the daemon's socket path must stay within 108 bytes.
    base = Path(tempfile.mkdtemp(prefix="lci-dd-"))
    daemon = PrivateDaemon(base)
    previous = os.environ.get("DOCKER_HOST")
    try:
        daemon.start()
        daemon.load(os.environ.get("LCI_DOCKER_IMAGE", "lci-sandbox:latest"))
        os.environ["DOCKER_HOST"] = daemon.host
        yield daemon
    finally:
        if previous is None:
            os.environ.pop("DOCKER_HOST", None)
        else:
            os.environ["DOCKER_HOST"] = previous
        daemon.stop()
        shutil.rmtree(base, ignore_errors=True)


def run_soak(config: SoakConfig, log_dir: Path | None = None) -> dict[str, Any]:
    """Run one soak; the server's log is kept in `log_dir` (default: a temporary directory, kept
    only when a promise was broken) and named in the result."""
    with docker_daemon(config) as daemon:
        return _run_soak(config, daemon, log_dir)


def _run_soak(
    config: SoakConfig, daemon: PrivateDaemon | None, log_dir: Path | None
) -> dict[str, Any]:
    model = SoakModel()
    keep = Path(tempfile.mkdtemp(prefix="lci-soak-logs-")) if log_dir is None else log_dir
    previous = os.environ.get("LCI_TEST_SERVER_LOGS")
    os.environ["LCI_TEST_SERVER_LOGS"] = str(keep)  # LciServer writes its log there
    try:
        with private_state_dir() as state_dir:
            env = {
                "LCI_STATE_DIR": str(state_dir),
                "LCI_LLM_READ_TIMEOUT_S": str(UPSTREAM_TIMEOUT_S),
                **config.env,
            }
            args = ["--backend", config.backend, "--log-level", "info"]
            with LciServer(model.base_url, env=env, args=args) as server:
                result = asyncio.run(_soak(config, server, model, state_dir, daemon))
                result["server_log"] = str(server.log_path)
    finally:
        model.close()
        if previous is None:
            os.environ.pop("LCI_TEST_SERVER_LOGS", None)
        else:
            os.environ["LCI_TEST_SERVER_LOGS"] = previous
    if log_dir is None and not broken_promises(result):
        shutil.rmtree(keep, ignore_errors=True)
        result["server_log"] = None
    return result


async def _soak(
    config: SoakConfig,
    server: LciServer,
    model: SoakModel,
    state_dir: Path,
    daemon: PrivateDaemon | None,
) -> dict[str, Any]:
    pid = server.process.pid
    rng = random.Random(config.seed)
    target = Target(pid, "127.0.0.1", server.port, config.backend, state_dir, model, rng, daemon)
    limits = httpx.Limits(max_connections=config.clients * 2)
    async with httpx.AsyncClient(base_url=server.url, timeout=None, limits=limits) as http:
        await _warm_up(http)
        before = await _settled_snapshot(pid, state_dir, None)
        progress(f"soak: {config.clients} clients, {config.duration_s:g} s on {config.backend}")
        stats = Stats()
        deadline = time.monotonic() + config.duration_s

        def dump_tasks() -> None:  # the server logs its tasks' stacks (engine.server.run)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGUSR1)

        clients = [
            Client(
                http,
                stats,
                random.Random(config.seed * 1000 + i),
                config.client_timeout_s,
                dump_tasks,
            )
            for i in range(config.clients)
        ]
        injected: list[str] = []
        samples: list[tuple[float, float]] = []
        await asyncio.gather(
            *(client.run(deadline) for client in clients),
            _inject(config, target, deadline, injected),
            _sample(pid, state_dir, deadline, samples, stats.started),
        )
        await _close_all(http)
        after = await _settled_snapshot(pid, state_dir, before)
    result = _report(config, stats, target, injected, samples, before, after)
    if config.backend == "docker" and leaks(before, after):
        result["docker_leftovers"] = await asyncio.to_thread(docker_leftovers, pid)
    return result


async def _warm_up(http: httpx.AsyncClient) -> None:
    """One session first, so the fork server and the pools are up before `before` is taken."""
    created = await http.post("/v1/sessions", json={})
    created.raise_for_status()
    session_id = created.json()["id"]
    await http.post(f"/v1/sessions/{session_id}/execute", json={"code": "1 + 1"})
    await http.delete(f"/v1/sessions/{session_id}")


async def _inject(config: SoakConfig, target: Target, deadline: float, log: list[str]) -> None:
    names = config.faults
    if names is None:
        names = faults_for(config.backend, target.daemon is not None)
    if not names:
        return
    while time.monotonic() + config.fault_every_s < deadline:
        await asyncio.sleep(config.fault_every_s)
        name = target.rng.choice(names)
        try:
            line = await FAULTS[name](target)
        except Exception as exc:  # a fault that could not be injected is reported, not fatal
            line = f"{name}: could not inject: {exc!r}"
        log.append(line)
        progress(line)


async def _sample(
    pid: int, state_dir: Path, deadline: float, samples: list[tuple[float, float]], t0: float
) -> None:
    while time.monotonic() < deadline:
        shot = await asyncio.to_thread(snapshot, pid, state_dir)
        samples.append((time.monotonic() - t0, shot.server_rss_mb))
        await asyncio.sleep(1.0)


async def _close_all(http: httpx.AsyncClient) -> None:
    """Sessions left by the surfaces (implicit Responses containers) are closed too: what stays
    after that is a leak."""
    listed = await http.get("/v1/sessions")
    for session in listed.json().get("sessions", []):
        with contextlib.suppress(httpx.HTTPError):
            await http.delete(f"/v1/sessions/{session['id']}")


async def _settled_snapshot(pid: int, state_dir: Path, before: Snapshot | None) -> Snapshot:
    """A snapshot once the server is quiet: pools refilled, closed sandboxes gone (up to 30 s)."""
    shot = await asyncio.to_thread(snapshot, pid, state_dir)
    for _ in range(60):
        await asyncio.sleep(0.5)
        again = await asyncio.to_thread(snapshot, pid, state_dir)
        settled = again.processes == shot.processes and again.mounts == shot.mounts
        if settled and (before is None or not leaks(before, again)):
            return again
        shot = again
    return shot


def _report(
    config: SoakConfig,
    stats: Stats,
    target: Target,
    injected: list[str],
    samples: list[tuple[float, float]],
    before: Snapshot,
    after: Snapshot,
) -> dict[str, Any]:
    requests = sum(len(v) for v in stats.latencies.values())
    rss = [mb for _, mb in samples]
    half = len(rss) // 2
    growth = (max(rss[half:]) - max(rss[:half])) if half else 0.0
    return {
        "config": {k: v for k, v in vars(config).items() if k != "env"},
        "requests": requests,
        "throughput_rps": requests / config.duration_s,
        "latency": {op: summarize(v) for op, v in sorted(stats.latencies.items())},
        "statuses": dict(sorted(stats.statuses.items())),
        "outcomes": dict(stats.outcomes),
        "faults": injected,
        "promises": {
            "server_errors_500": stats.statuses.get("500", 0),
            "hangs": stats.hangs,
            "executions_without_outcome": stats.executions_without_outcome,
            "lost_files": stats.lost_files,
            "silent_state_loss": stats.silent_state_loss + target.unannounced_losses,
            "stuck_sessions": target.stuck_sessions,
            "leaks": leaks(before, after),
            "rss_growth_second_half_mb": round(growth, 1),
        },
        "announced_state_loss": stats.announced_state_loss,
        "lost_sessions": stats.lost_sessions,
        "daemon_restarts": target.daemon.restarts if target.daemon else 0,
        "before": before.as_dict(),
        "after": after.as_dict(),
        "rss_samples": samples,
        "timeline": stats.timeline,
        "errors": stats.errors[:50],
    }


def broken_promises(result: dict[str, Any]) -> list[str]:
    """The promises a soak result breaks (empty: all kept)."""
    promises = result["promises"]
    broken = [
        f"{name}: {promises[name]}"
        for name in (
            "server_errors_500",
            "hangs",
            "executions_without_outcome",
            "lost_files",
            "silent_state_loss",
            "stuck_sessions",
        )
        if promises[name]
    ]
    if promises["leaks"]:
        broken.append(f"leaks: {promises['leaks']}")
    return broken
