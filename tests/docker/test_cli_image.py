"""`lci image build`: which build it picks, and that an existing image is left alone."""

from __future__ import annotations

import argparse

import pytest

from engine.cli import image as cli_image
from engine.config import Settings
from tests.docker.conftest import require_docker


def test_unreachable_registry_is_detected() -> None:
    assert not cli_image.registry_reachable("http://127.0.0.1:1/v2/", timeout=2)


def test_offline_build_uses_the_script() -> None:
    command = cli_image.build_command("lci-test:x", force=True, offline=True)
    assert command[0] == "bash" and command[1].endswith("sandbox_images/build_offline.sh")
    assert command[2:] == ["--force", "lci-test:x"]


@pytest.mark.docker
def test_existing_image_is_not_rebuilt(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    require_docker(settings)
    args = argparse.Namespace(force=False, image=settings.docker_image, offline=False)
    assert cli_image.run(args) == 0
    assert "already exists" in capsys.readouterr().out
