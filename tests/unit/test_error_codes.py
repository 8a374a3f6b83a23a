"""An error reported elsewhere (an HTTP error body, a cluster actor's reply) comes back as the
exception its stable `code` names, with the details its class carries."""

from __future__ import annotations

import inspect

import pytest

from engine import errors

PUBLIC = [
    cls
    for name, cls in vars(errors).items()
    if inspect.isclass(cls) and issubclass(cls, errors.LCIError) and not name.startswith("_")
]


@pytest.mark.parametrize("cls", PUBLIC, ids=lambda cls: cls.__name__)
def test_each_code_comes_back_as_its_class(cls: type[errors.LCIError]) -> None:
    param = "spec.limits" if cls is errors.BadParameter else None
    exc = errors.from_code(cls.code, "what went wrong", param=param)
    assert type(exc) is cls
    assert (exc.message, exc.code) == ("what went wrong", cls.code)


def test_details_go_to_the_classes_that_carry_them() -> None:
    busy = errors.from_code("capacity_exceeded", "full", retry_after_s=2.5)
    assert isinstance(busy, errors.CapacityExceeded) and busy.retry_after_s == 2.5
    missing = errors.from_code("file_not_found", "no such file", param="path")
    assert isinstance(missing, errors.FileNotFound) and missing.param == "path"
    upstream = errors.from_code("upstream_error", "model down", status=502)
    assert isinstance(upstream, errors.UpstreamError) and upstream.status == 502
    closed = errors.from_code("session_closed", "closed", status=409, retry_after_s=1.0)
    assert not hasattr(closed, "status") and not hasattr(closed, "retry_after_s")


def test_invalid_request_without_a_param_is_the_general_class() -> None:
    assert type(errors.from_code("invalid_request", "bad")) is errors.InvalidRequest


def test_an_unknown_code_is_kept() -> None:
    exc = errors.from_code("teapot", "short and stout")
    assert type(exc) is errors.LCIError and exc.code == "teapot"
