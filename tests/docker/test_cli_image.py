"""`lci image build`: which build it picks, and that an existing image is left alone."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

import engine.agent
from engine.cli import image as cli_image
from engine.config import Settings
from engine.core.agent_files import agent_digest
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


def test_the_offline_build_labels_images_with_the_engines_agent_digest() -> None:
    """build_offline.sh computes the digest itself (it runs before the engine is installed): the
    same as the engine's, or every image it builds would look stale to the docker backend."""
    script = (cli_image.IMAGES_DIR / "build_offline.sh").read_text()
    snippet = re.search(
        r"AGENT_DIGEST=\"\$\(python3 -c '(.*?)' \"\$AGENT_SOURCE\"\)\"", script, re.S
    )
    assert snippet is not None
    source = Path(engine.agent.__file__).parent
    computed = subprocess.run(
        [sys.executable, "-c", snippet.group(1), str(source)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert computed == agent_digest()
    assert "lci.agent_digest" in (cli_image.IMAGES_DIR / "finish.Dockerfile").read_text()
