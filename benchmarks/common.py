"""Shared benchmark plumbing: timing statistics, progress lines, machine info, JSON and PNG output."""

from __future__ import annotations

import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class LocalServer:
    """`lci serve` on a free port of 127.0.0.1 with no model server behind it (the session API
    needs none), in an environment without the caller's `LCI_` variables (nor any other prefix in
    `drop`) plus `env`."""

    def __init__(
        self,
        state_dir: str,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        drop: tuple[str, ...] = ("LCI_",),
    ) -> None:
        import httpx  # the benchmark extra's; only the server benchmarks need it

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        environ = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
        environ.update({"LCI_STATE_DIR": state_dir, **(env or {})})
        command = [sys.executable, "-m", "engine.cli", "serve", "--port", str(self.port)]
        command += ["--llm-base-url", f"http://127.0.0.1:{free_port()}/v1"]
        self.process = subprocess.Popen(
            [*command, "--log-level", "warning", *args],
            cwd=REPO,
            env=environ,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        self.close()
        raise RuntimeError("lci serve did not start")

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def summarize(samples_s: list[float]) -> dict[str, float]:
    """p50/p90/p99/mean/min in milliseconds."""
    ordered = sorted(samples_s)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000

    return {
        "n": len(ordered),
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "mean_ms": statistics.fmean(ordered) * 1000,
        "min_ms": ordered[0] * 1000,
    }


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def timed_loop(step: Callable[[], Any], count: int, label: str) -> list[float]:
    samples = []
    for i in range(count):
        started = time.perf_counter()
        step()
        samples.append(time.perf_counter() - started)
        if (i + 1) % max(1, count // 4) == 0:
            progress(f"{label}: {i + 1}/{count}")
    return samples


def machine() -> dict[str, Any]:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            check=False,
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "commit": commit,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def save(name: str, results: dict[str, Any], bars: dict[str, float], ylabel: str) -> Path:
    """Write results/<name>.json and a bar chart results/<name>.png; returns the JSON path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **results}, indent=2) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        progress("matplotlib not installed: no plot written")
        return path
    figure, axes = plt.subplots(figsize=(8, 0.6 * len(bars) + 1.5))
    labels = list(bars)
    axes.barh(labels, [bars[k] for k in labels], color="#4c72b0")
    axes.set_xscale("log")
    axes.set_xlabel(ylabel)
    axes.invert_yaxis()
    for index, value in enumerate(bars.values()):
        axes.text(value, index, f" {value:.3g}", va="center")
    axes.set_title(name)
    figure.tight_layout()
    figure.savefig(path.with_suffix(".png"), dpi=100)
    plt.close(figure)
    return path


def plot_groups(path: Path, title: str, groups: dict[str, dict[str, float]]) -> None:
    """Horizontal bars, log scale, one block of bars per group (e.g. per snippet)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        progress("matplotlib not installed: no plot written")
        return
    labels, values, colors = [], [], []
    palette = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3"]
    for index, (group, bars) in enumerate(groups.items()):
        for name, value in bars.items():
            labels.append(f"{group}: {name}" if group else name)
            values.append(value)
            colors.append(
                palette[index % len(palette)]
                if len(groups) > 1
                else ("#4c72b0" if name.startswith("lci") else "#999999")
            )
    figure, axes = plt.subplots(figsize=(9, 0.4 * len(labels) + 1.5))
    axes.barh(labels, values, color=colors)
    axes.set_xscale("log")
    axes.invert_yaxis()
    for index, value in enumerate(values):
        axes.text(value, index, f" {value:.3g}", va="center", fontsize=8)
    axes.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def chosen_backends(docker: str) -> list[Any]:
    """The backends a benchmark runs, from its `--docker auto|require|skip` option: subprocess
    always, docker where its daemon and image answer (`require`: exit with the reason if not)."""
    from engine.core.backends.docker.api import unavailable_reason
    from engine.models import BackendName

    backends = [BackendName.SUBPROCESS]
    reason = None if docker == "skip" else unavailable_reason("lci-sandbox:latest")
    if docker != "skip" and reason is None:
        backends.append(BackendName.DOCKER)
    elif docker == "require":
        raise SystemExit(f"docker is required: {reason}")
    return backends
