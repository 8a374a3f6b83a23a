"""The operator's maxima: one per limit of `Limits`, each enforced by the same check."""

from __future__ import annotations

import pytest

from engine.config import LimitMaxima
from engine.errors import BadParameter
from engine.models import Limits


def test_every_limit_has_a_maximum() -> None:
    assert set(LimitMaxima.model_fields) == set(Limits.model_fields)
    maxima = LimitMaxima()
    assert (maxima.memory_mb, maxima.timeout_s, maxima.cpus, maxima.network) == (
        8192,
        3600,
        None,
        True,
    )


def test_given_maxima_keep_the_other_defaults() -> None:
    maxima = LimitMaxima.model_validate({"memory_mb": 1024})
    assert (maxima.memory_mb, maxima.disk_mb) == (1024, 8192)


@pytest.mark.parametrize(
    ("name", "cap", "asked"),
    [
        ("timeout_s", 10.0, 11.0),
        ("cpu_s", 10.0, 11.0),
        ("memory_mb", 64, 65),
        ("max_procs", 8, 9),
        ("disk_mb", 16, 17),
        ("open_files", 64, 65),
        ("output_bytes", 4096, 4097),
        ("cpus", 1.0, 1.5),
    ],
)
def test_a_limit_above_its_maximum_is_named(name: str, cap: float, asked: float) -> None:
    maxima = LimitMaxima.model_validate({name: cap})
    maxima.check(Limits.model_validate({name: cap}))  # at the maximum: fine
    with pytest.raises(BadParameter) as caught:
        maxima.check(Limits.model_validate({name: asked}), "spec.limits")
    assert caught.value.message == f"spec.limits.{name} {asked} exceeds the server's maximum {cap}"
    assert caught.value.param == "spec.limits"


def test_a_forbidden_switch_is_refused() -> None:
    with pytest.raises(BadParameter, match=r"limits\.network is not allowed on this server"):
        LimitMaxima(network=False).check(Limits(network=True))
    LimitMaxima(network=False).check(Limits())
