"""`python -m benchmarks [--quick] [--docker auto|require|skip]`: the whole suite, with progress on
stderr, a summary table with the ratios to the baselines on stdout, and JSON plus one PNG per
scenario under benchmarks/results/. The docker backend's scenarios run where a daemon and the sandbox
image are available (`--docker require` makes their absence an error, as in CI).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
from typing import Any

from benchmarks import docker_bench, suite
from benchmarks.common import RESULTS, machine, plot_groups, progress
from benchmarks.targets import Target, gate_failures, ratio, suite_targets
from engine.config import Settings


def start_ratios(ready: dict[str, Any]) -> dict[str, dict[str, float]]:
    """How many times faster each lci start is than each baseline start, p50 to p50."""
    baselines = [b for b in ("fresh python -c (imports)", "jupyter kernel") if b in ready]
    return {
        name: {b: ratio(ready[b]["p50_ms"], stats["p50_ms"]) for b in baselines}
        for name, stats in ready.items()
        if name.startswith("lci")
    }


def print_summary(results: dict[str, Any]) -> None:
    print("\nReady session (ms)" + " " * 42 + "p50       p99")
    for name, stats in results["ready"].items():
        print(f"  {name:<56} {stats['p50_ms']:>8.1f}  {stats['p99_ms']:>8.1f}")
    print("\nReady session, times faster than")
    for name, by_baseline in results["start_ratios"].items():
        cells = "  ".join(f"{b}: {value:.1f}x" for b, value in by_baseline.items())
        print(f"  {name:<56} {cells}")
    print("\nWarm round trip (ms, p50)")
    for snippet, by_tool in results["round_trips"].items():
        cells = "  ".join(f"{tool}: {stats['p50_ms']:.3f}" for tool, stats in by_tool.items())
        print(f"  {snippet:<16} {cells}")
    print("\nConcurrent sessions running 1+1")
    for level, stats in results["concurrency"].items():
        print(
            f"  {level:>3} sessions: {stats['executions_per_s']:>8.0f} executions/s, "
            f"p50 {stats['latency']['p50_ms']:.2f} ms, p99 {stats['latency']['p99_ms']:.2f} ms"
        )
    print("\nIdle memory per session (MiB)")
    for name, stats in results["memory"].items():
        print(f"  {name:<20} USS {stats['uss_mib']:>6.1f}   RSS {stats['rss_mib']:>6.1f}")
    if "docker" in results:
        print("\nDocker backend (ms)" + " " * 42 + "p50       p99")
        for name in (*docker_bench.FIGURES, *docker_bench.TRANSFERS):
            stats = results["docker"][name]
            print(f"  {name:<56} {stats['p50_ms']:>8.2f}  {stats['p99_ms']:>8.2f}")
        for label, key in docker_bench.MEMORY:
            memory = results["docker"][key]
            print(
                f"  {label:<32} cgroup {memory['cgroup_usage_mib']:.1f} MiB, "
                f"containerd shim {memory['containerd_shim_uss_mib']:.1f} MiB"
            )
    print("\nTargets (gate: fails when a gated figure is worse than half its target)")
    for what, value, target, met in results["targets"]:
        print(f"  {'ok  ' if met else 'MISS'} {what:<62} {value:>9.2f}  (target {target})")


def check_gate(targets: list[Target]) -> int:
    """0 when every gated figure is within half its target; else 1, naming the ones that are not."""
    failures = gate_failures(targets)
    for target in failures:
        print(
            f"GATE: {target.what} is {target.value:.2f}, worse than half its target "
            f"({target.op} {target.bound:g}, so {target.op} {target.gate_bound:g})"
        )
    if not failures:
        print(
            f"gate passed: {sum(t.gated for t in targets)} gated figures within half their target"
        )
    return 1 if failures else 0


def docker_results(mode: str, quick: bool) -> dict[str, Any] | None:
    if mode == "skip":
        return None
    settings = Settings()
    reason = docker_bench.unavailable(settings)
    if reason is not None:
        if mode == "require":
            raise SystemExit(f"docker scenarios required, but docker is unavailable: {reason}")
        progress(f"docker scenarios skipped: {reason}")
        return None
    return docker_bench.report(asyncio.run(docker_bench.measure(settings, quick)))


def write_plots(results: dict[str, Any]) -> None:
    """One PNG per scenario next to suite.json (also: `python -m benchmarks --replot`)."""
    ready_bars = {k: v["p50_ms"] for k, v in results["ready"].items()}
    if "docker" in results:
        ready_bars |= {
            label: results["docker"][key]["p50_ms"] for label, key in docker_bench.READY.items()
        }
    plot_groups(RESULTS / "suite_ready.png", "Time to a ready session (p50, ms)", {"": ready_bars})
    plot_groups(
        RESULTS / "suite_round_trips.png",
        "Warm round trip (p50, ms)",
        {
            snippet: {k: v["p50_ms"] for k, v in tools.items()}
            for snippet, tools in results["round_trips"].items()
        },
    )
    plot_groups(
        RESULTS / "suite_memory.png",
        "Idle memory per session (MiB)",
        {
            "USS": {k: v["uss_mib"] for k, v in results["memory"].items()},
            "RSS": {k: v["rss_mib"] for k, v in results["memory"].items()},
        },
    )
    plot_groups(
        RESULTS / "suite_concurrency.png",
        "Executions per second (1+1)",
        {"": {f"{k} sessions": v["executions_per_s"] for k, v in results["concurrency"].items()}},
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sample counts, for CI")
    parser.add_argument(
        "--docker",
        choices=["auto", "require", "skip"],
        default="auto",
        help="the docker backend's scenarios: where available (auto), always, or never",
    )
    parser.add_argument(
        "--replot", action="store_true", help="redraw the plots of the last run's suite.json"
    )
    parser.add_argument(
        "--gate",
        action="store_true",
        help="exit 1 when a gated figure is worse than half its target (the regression gate)",
    )
    args = parser.parse_args()
    if args.replot:
        write_plots(json.loads((RESULTS / "suite.json").read_text()))
        return
    starts, trips, per_session = (3, 40, 60) if args.quick else (15, 400, 200)
    levels = [1, 4, 16] if args.quick else [1, 4, 16, 64]
    state_dir = suite.new_state_dir()
    progress(
        f"benchmark suite ({'quick' if args.quick else 'full'}); modules: {suite.DATA_SCIENCE}"
    )
    try:
        results: dict[str, Any] = {
            "ready": asyncio.run(suite.ready_sessions(state_dir, starts)),
            "round_trips": asyncio.run(suite.round_trips(state_dir, trips)),
            "concurrency": asyncio.run(suite.concurrency(state_dir, levels, per_session)),
            "memory": asyncio.run(suite.idle_memory(state_dir, 4)),
        }
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
    docker = docker_results(args.docker, args.quick)
    if docker is not None:
        results["docker"] = docker
    targets = suite_targets(results)
    results["targets"] = [target.row() for target in targets]
    results["start_ratios"] = start_ratios(results["ready"])
    results["mode"] = "quick" if args.quick else "full"
    results["modules"] = suite.DATA_SCIENCE
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "suite.json"
    path.write_text(json.dumps({"machine": machine(), **results}, indent=2) + "\n")
    write_plots(results)
    print_summary(results)
    print(f"\nresults: {path} and suite_*.png")
    if args.gate:
        raise SystemExit(check_gate(targets))


if __name__ == "__main__":
    main()
