"""The regression gate of the benchmark suite: a gated figure fails only once it is worse than half
its target, in whichever direction the target points."""

from __future__ import annotations

import math

import pytest

from benchmarks.targets import Target, gate_failures


@pytest.mark.parametrize(
    ("op", "bound", "value", "met", "passes"),
    [
        ("<=", 4, 3.9, True, True),
        ("<=", 4, 7.9, False, True),  # a miss, but within half the target
        ("<=", 4, 8.1, False, False),  # a 2x regression
        (">=", 100, 120, True, True),
        (">=", 100, 51, False, True),
        (">=", 100, 49, False, False),
        ("<", 10, 19.9, False, True),
        ("<", 10, 20, False, False),
        ("<=", 4, math.nan, False, False),  # a figure that could not be measured fails
    ],
)
def test_half_the_target(op: str, bound: float, value: float, met: bool, passes: bool) -> None:
    target = Target("figure", value, op, bound)
    assert (target.met, target.passes_gate) == (met, passes)


def test_only_gated_figures_can_fail_the_gate() -> None:
    slow = Target("slow, gated", 9.0, "<=", 4)
    slow_ungated = Target("slow, reported only", 9.0, "<=", 4, gated=False)
    fine = Target("fine", 1.0, "<=", 4)
    assert gate_failures([slow, slow_ungated, fine]) == [slow]
