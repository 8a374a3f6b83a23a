"""Soak `lci serve`: many clients on every surface, faults injected, promises checked.

    python -m benchmarks.soak                       # 8 clients, 30 s, subprocess backend
    python -m benchmarks.soak --backend docker --clients 16 --duration 600 --fault-every 3
    python -m benchmarks.soak --backend docker --private-daemon   # adds daemon restarts

Writes results/soak_<backend>.json and a PNG (throughput, latency, server memory over time); exits
non-zero when a promise was broken (a 500, a hang, a lost file, silent state loss, a stuck session,
a leak).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS, machine, progress
from benchmarks.soak.faults import FAULTS
from benchmarks.soak.runner import SoakConfig, broken_promises, run_soak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__)
    parser.add_argument("--backend", choices=["subprocess", "docker", "both"], default="subprocess")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load")
    parser.add_argument("--fault-every", type=float, default=3.0, help="seconds between faults")
    parser.add_argument(
        "--faults", default=None, help=f"comma-separated subset of: {', '.join(FAULTS)}"
    )
    parser.add_argument(
        "--private-daemon",
        action="store_true",
        help="docker: run on a Docker daemon of the soak's own (root), adds the daemon_restart fault",
    )
    parser.add_argument("--quick", action="store_true", help="4 clients for 15 s (CI)")
    args = parser.parse_args(argv)
    if args.quick:
        args.clients, args.duration = 4, 15.0
    backends = ["subprocess", "docker"] if args.backend == "both" else [args.backend]
    failed = False
    for backend in backends:
        config = SoakConfig(
            backend=backend,
            clients=args.clients,
            duration_s=args.duration,
            fault_every_s=args.fault_every,
            faults=args.faults.split(",") if args.faults else None,
            private_daemon=args.private_daemon,
        )
        result = run_soak(config)
        path = save(f"soak_{backend}", result)
        broken = broken_promises(result)
        summary = result["promises"]
        progress(
            f"{backend}: {result['requests']} requests, {result['throughput_rps']:.1f}/s, "
            f"statuses {result['statuses']}, promises {summary}; wrote {path}"
        )
        if broken:
            failed = True
            progress(f"{backend}: BROKEN PROMISES: {broken}")
            for line in result["errors"][:20]:
                progress(f"  {line}")
    return 1 if failed else 0


def save(name: str, result: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **result}, indent=1) + "\n")
    plot(path.with_suffix(".png"), name, result)
    return path


def plot(path: Path, title: str, result: dict[str, Any]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        progress("matplotlib not installed: no plot written")
        return
    figure, (load, latency, memory) = plt.subplots(3, 1, figsize=(9, 10))
    timeline = result["timeline"]
    if timeline:
        end = int(max(t for t, _, _ in timeline)) + 1
        ok = [0] * end
        other = [0] * end
        for t, _, status in timeline:
            (ok if 200 <= status < 300 else other)[int(t)] += 1
        load.bar(range(end), ok, color="#55a868", label="2xx")
        load.bar(range(end), other, bottom=ok, color="#c44e52", label="other")
        load.set_ylabel("requests per second")
        load.legend()
    ops = list(result["latency"])
    p50 = [result["latency"][op]["p50_ms"] for op in ops]
    p99 = [result["latency"][op]["p99_ms"] for op in ops]
    positions = range(len(ops))
    latency.barh([p - 0.2 for p in positions], p50, height=0.4, label="p50", color="#4c72b0")
    latency.barh([p + 0.2 for p in positions], p99, height=0.4, label="p99", color="#dd8452")
    latency.set_yticks(list(positions), ops)
    latency.set_xscale("log")
    latency.set_xlabel("milliseconds")
    latency.legend()
    samples = result["rss_samples"]
    memory.plot([t for t, _ in samples], [mb for _, mb in samples], color="#8172b3")
    memory.set_xlabel("seconds")
    memory.set_ylabel("server RSS (MiB)")
    promises = result["promises"]
    figure.suptitle(
        f"{title}: {result['config']['clients']} clients, {len(result['faults'])} faults, "
        f"500s {promises['server_errors_500']}, hangs {promises['hangs']}, "
        f"lost files {promises['lost_files']}, silent state loss {promises['silent_state_loss']}"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


if __name__ == "__main__":
    sys.exit(main())
