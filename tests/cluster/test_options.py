"""Where a server's sessions run: given on the command line or in the environment."""

from __future__ import annotations

import argparse

import pytest

from engine.cli.serve import add_parser, configure
from engine.config import Settings


def parse(*args: str) -> Settings:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    settings, _ = configure(parser.parse_args(["serve", *args]))
    return settings


def test_the_ray_address_comes_from_the_option_or_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("LCI_RAY_ADDRESS", raising=False)
    assert parse().ray_address is None  # local sessions unless told
    assert parse("--ray-address", "10.0.0.5:6379").ray_address == "10.0.0.5:6379"
    monkeypatch.setenv("LCI_RAY_ADDRESS", "10.0.0.6:6379")
    assert parse().ray_address == "10.0.0.6:6379"
    assert parse("--ray-address", "10.0.0.7:6379").ray_address == "10.0.0.7:6379"
    assert parse().ray_allow_network is False  # sandboxes never reach Ray unless allowed
