"""What the subprocess sandbox's syscall filter costs: time to a ready session and the warm `1+1`
round trip, with the filter on and off (LCI_SECCOMP=0), measured in the same run in alternating
rounds so both see the same machine.

    python -m benchmarks.seccomp_cost [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import time

from benchmarks.common import progress, save, summarize
from engine import SessionManager
from engine.config import Settings
from engine.models import SessionSpec


def settings(seccomp: bool) -> Settings:
    # The fork server (the default start path) without a pool: every start is a real start.
    return Settings(seccomp=seccomp, subprocess_warm_pool=0, docker_warm_pool=0)


async def measure(rounds: int, starts: int, trips: int) -> dict[str, dict[str, list[float]]]:
    samples: dict[str, dict[str, list[float]]] = {
        mode: {"start": [], "round_trip": []} for mode in ("on", "off")
    }
    async with (
        SessionManager(settings(True)) as on,
        SessionManager(settings(False)) as off,
    ):
        managers = {"on": on, "off": off}
        for manager in managers.values():
            backend = await manager.backend(SessionSpec().backend)
            await backend.wait_forkserver(120)  # type: ignore[attr-defined]
        for round_index in range(rounds):
            # Sample by sample, alternating which mode goes first: on this kind of shared
            # machine the load changes within seconds.
            for i in range(starts):
                for mode in ("on", "off") if i % 2 else ("off", "on"):
                    started = time.perf_counter()
                    session = await managers[mode].create(SessionSpec())
                    samples[mode]["start"].append(time.perf_counter() - started)
                    await managers[mode].close(session.id)
            sessions = {mode: await m.create(SessionSpec()) for mode, m in managers.items()}
            assert sessions["on"].info().isolation.syscall_filter is not None
            assert sessions["off"].info().isolation.syscall_filter is None
            for i in range(trips + 1):
                for mode in ("on", "off") if i % 2 else ("off", "on"):
                    started = time.perf_counter()
                    await sessions[mode].execute("1 + 1")
                    if i:  # the first is a warm-up
                        samples[mode]["round_trip"].append(time.perf_counter() - started)
            for mode, session in sessions.items():
                await managers[mode].close(session.id)
            progress(f"round {round_index + 1}/{rounds}")
    return samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small sample counts (CI)")
    args = parser.parse_args()
    rounds, starts, trips = (2, 3, 50) if args.quick else (8, 5, 300)
    samples = asyncio.run(measure(rounds, starts, trips))
    results: dict[str, object] = {}
    for metric in ("start", "round_trip"):
        on, off = summarize(samples["on"][metric]), summarize(samples["off"][metric])
        results[metric] = {
            "filter_on": on,
            "filter_off": off,
            "ratio_p50": on["p50_ms"] / off["p50_ms"],
        }
        print(
            f"{metric:<11} p50 on {on['p50_ms']:8.3f} ms  off {off['p50_ms']:8.3f} ms  "
            f"ratio {on['p50_ms'] / off['p50_ms']:.3f}"
        )
    bars = {
        f"{metric} {mode}": summarize(samples[mode][metric])["p50_ms"]
        for metric in ("start", "round_trip")
        for mode in ("on", "off")
    }
    save("seccomp_cost", results, bars, "p50 ms")


if __name__ == "__main__":
    main()
