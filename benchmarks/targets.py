"""The suite's targets, and the regression gate built on them.

Each target compares lci with a baseline measured beside it in the same run (a fresh interpreter, a
bare pipe worker, a jupyter kernel), so a slow or busy machine moves both sides alike; the few
absolute figures (memory, the docker pool) do not depend on the machine's speed. The gate
(`python -m benchmarks --quick --gate`, which CI runs) fails when a gated figure is worse than half
its target: noise in a quick run stays well inside that margin, a 2x regression does not."""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "<": operator.lt,
}


@dataclass(frozen=True)
class Target:
    what: str
    value: float
    op: str  # one of _OPS: which side of `bound` the value must be on
    bound: float
    gated: bool = True  # part of the regression gate

    @property
    def met(self) -> bool:
        return not math.isnan(self.value) and _OPS[self.op](self.value, self.bound)

    @property
    def gate_bound(self) -> float:
        """Half the target: twice the bound where lower is better, half of it where higher is."""
        return self.bound / 2 if self.op == ">=" else self.bound * 2

    @property
    def passes_gate(self) -> bool:
        return not math.isnan(self.value) and _OPS[self.op](self.value, self.gate_bound)

    def row(self) -> list[Any]:
        """The JSON form: (what, measured, target, met)."""
        return [self.what, self.value, f"{self.op} {self.bound:g}", self.met]


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else float("nan")


# Where the pre-forked session with the data stack is measured (benchmarks.suite.PRE_FORKED).
PRE_FORKED = "lci fork server, pre-forked (imports preloaded)"


def suite_targets(results: dict[str, Any]) -> list[Target]:
    ready, trips, conc, memory = (
        results[k] for k in ("ready", "round_trips", "concurrency", "memory")
    )
    fork = ready[PRE_FORKED]["p50_ms"]
    rows = [
        Target(
            "fresh python with imports / lci fork server, p50",
            ratio(ready["fresh python -c (imports)"]["p50_ms"], fork),
            ">=",
            100,
        )
    ]
    if "jupyter kernel" in ready:
        value = ratio(ready["jupyter kernel"]["p50_ms"], fork)
        rows.append(Target("jupyter kernel start / lci fork server, p50", value, ">=", 50))
    rows.append(
        Target("idle session USS, fork server (MiB)", memory["lci fork server"]["uss_mib"], "<", 10)
    )
    one, pipe = trips["1+1"]["lci"]["p50_ms"], trips["1+1"]["bare pipe worker"]["p50_ms"]
    rows.append(Target("1+1 round trip / bare pipe worker, p50", ratio(one, pipe), "<=", 4))
    if "jupyter kernel" in trips["1+1"]:
        value = ratio(trips["1+1"]["jupyter kernel"]["p50_ms"], one)
        rows.append(Target("jupyter 1+1 / lci 1+1, p50", value, ">=", 20))
    big = trips["print 1 MiB"]
    value = ratio(big["lci"]["p50_ms"], big["bare pipe worker"]["p50_ms"])
    rows.append(Target("print 1 MiB / bare pipe worker, p50", value, "<=", 3))
    if "16" in conc:
        per_s = conc["16"]["executions_per_s"]
        rows.append(Target("16 concurrent sessions, executions/s", per_s, ">=", 5000, gated=False))
        # The same figure in units of one bare pipe worker running 1+1 back to back, measured in
        # this run: what the gate checks, since the absolute rate follows the machine. 0.3 is
        # 15,000/s on a 2-core machine whose pipe worker does 1+1 in 0.02 ms.
        rows.append(
            Target(
                "16 concurrent sessions / one bare pipe worker, 1+1 per second",
                per_s * pipe / 1000,
                ">=",
                0.3,
            )
        )
    if "docker" in results:
        rows += docker_targets(results["docker"])
    return rows


def docker_targets(docker: dict[str, Any]) -> list[Target]:
    rows = [
        Target(
            "docker session from the warm pool, p50 (ms)",
            docker["docker_pool_claim"]["p50_ms"],
            "<",
            10,
        )
    ]
    for name, value in docker["ratios"].items():
        if name.startswith("docker_vs_host_dir_"):
            what = name.removeprefix("docker_vs_host_dir_").removesuffix("_p50")
            # Not gated yet: file transfers through the daemon miss this target today.
            rows.append(Target(f"docker file {what} / host directory, p50", value, "<=", 3, False))
    return rows


def gate_failures(targets: list[Target]) -> list[Target]:
    """The gated targets worse than half their target."""
    return [t for t in targets if t.gated and not t.passes_gate]
