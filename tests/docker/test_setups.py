"""The docker suite in the set-ups the docker backend must work in, needing nothing but the Docker
API: an engine in its own mount and pid namespace with its state dir on a private tmpfs (as in a
container with the daemon's socket mounted, or a systemd unit with PrivateTmp), and a second
daemon, reached through DOCKER_HOST, that shares no filesystem with the engine.

Each test runs the docker suite again in a child pytest, so they are slow and opt-in: CI runs them
with `pytest -m setups` (the default run leaves them out)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.soak.daemon import PrivateDaemon
from engine.config import Settings
from tests.conftest import require_docker, require_root_tools

pytestmark = [pytest.mark.setups, pytest.mark.timeout(1800)]
ROOT = Path(__file__).parents[2]
SUITE = [
    sys.executable,
    "-m",
    "pytest",
    "-q",
    "-p",
    "no:cacheprovider",
    "-m",
    "docker",
    "tests/docker",
]
SUITE_TIMEOUT_S = 1500


def run_suite(argv: list[str], env: dict[str, str]) -> None:
    result = subprocess.run(
        argv,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=SUITE_TIMEOUT_S,
        check=False,
    )
    lines = (result.stdout + result.stderr).splitlines()
    summary = [line for line in lines if line.startswith(("FAILED", "ERROR")) or " passed" in line]
    tail = "\n".join([*lines[-40:], *summary])
    assert result.returncode == 0, f"the docker suite failed in this set-up:\n{tail}"
    assert " passed" in tail and "skipped" not in tail.split(" passed")[-1], tail


@pytest.fixture
def private() -> Iterator[Path]:
    # Short: unix socket paths under it must stay within 108 bytes.
    path = Path(tempfile.mkdtemp(prefix="lci-ns-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_the_docker_suite_from_a_private_mount_and_pid_namespace(private: Path) -> None:
    """The engine cannot see the daemon's filesystem, nor the daemon the engine's: its state dir
    and temporary files are on a tmpfs mounted in its own mount namespace only."""
    require_root_tools("unshare")
    require_docker(Settings())
    script = 'mount -t tmpfs -o size=256m,mode=1777 lci-private "$1" && shift && exec "$@"'
    argv = ["unshare", "--mount", "--pid", "--fork", "--mount-proc", "sh", "-c", script, "sh"]
    env = {**os.environ, "TMPDIR": str(private), "CI": os.environ.get("CI", "true")}
    run_suite([*argv, str(private), *SUITE], env)
    assert not any(private.iterdir())  # nothing reached the host's side of the mount point


@pytest.fixture
def second_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateDaemon]:
    require_root_tools("unshare", "dockerd", "docker", "ip")
    require_docker(Settings())
    daemon = PrivateDaemon(tmp_path_factory.mktemp("dockerd"))
    try:
        daemon.start()
        daemon.load(Settings().docker_image)
        yield daemon
    finally:
        daemon.stop()


def test_the_docker_suite_against_a_second_daemon(second_daemon: PrivateDaemon) -> None:
    env = {**os.environ, "DOCKER_HOST": second_daemon.host, "CI": os.environ.get("CI", "true")}
    # That test connects from a container to a listener of its own through the daemon's bridge,
    # which here lives in the second daemon's network namespace, not the test's.
    apart = "--deselect=tests/docker/test_escapes.py::test_network_can_be_enabled_per_session"
    run_suite([*SUITE, apart], env)
    # Everything the suite made on that daemon is gone with it.
    for kind in ("ps", "volume"):
        listed = second_daemon.docker(*(["ps", "-aq"] if kind == "ps" else ["volume", "ls", "-q"]))
        assert listed.returncode == 0 and listed.stdout.strip() == b"", (kind, listed.stdout)
