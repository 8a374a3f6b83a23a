"""`lci doctor` with a docker runtime configured (`LCI_DOCKER_RUNTIME`): it starts one session on
it and says whether that worked, and which kernel the cell saw (gVisor's own, or the host's)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from engine.config import Settings
from tests.cli.helpers import lci
from tests.conftest import docker_on_gvisor, require_docker

pytestmark = pytest.mark.docker


def runtime_check(tmp_path: Path, runtime: str) -> tuple[int, dict[str, Any]]:
    env = {"LCI_DOCKER_RUNTIME": runtime, "LCI_DOCKER_WARM_POOL": "0"}
    if "DOCKER_HOST" in os.environ:
        env["DOCKER_HOST"] = os.environ["DOCKER_HOST"]
    done = lci("doctor", "--json", state_dir=tmp_path / "state", env=env)
    assert done.returncode in (0, 1), done.stderr
    found = {c["name"]: c for c in json.loads(done.stdout)}
    return done.returncode, found["docker runtime"]


def test_the_configured_runtime_runs_a_cell(tmp_path: Path) -> None:
    require_docker(Settings())
    runtime = Settings().docker_runtime or "runc"
    _, check = runtime_check(tmp_path, runtime)
    assert check["ok"], check
    kernel = "its own kernel" if docker_on_gvisor() else "the host's kernel"
    assert repr(runtime) in check["detail"] and kernel in check["detail"]


def test_a_runtime_the_daemon_lacks_is_reported_with_the_fix(tmp_path: Path) -> None:
    require_docker(Settings())
    status, check = runtime_check(tmp_path, "no-such-runtime")
    assert status == 1 and not check["ok"]
    assert "no-such-runtime" in check["detail"]
    assert "daemon.json" in check["fix"] and "runsc" in check["fix"]
