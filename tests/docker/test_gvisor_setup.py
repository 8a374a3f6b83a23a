"""The docker behaviour suite and the hostile-cell tests again, with every container under gVisor:
a daemon of this test's own (its own namespaces, data root and socket, see `PrivateDaemon`) that
registers Debian's `runsc` as `runsc`, and `LCI_DOCKER_RUNTIME=runsc`. The host's daemon is not
touched. Tests whose claim is about a mechanism gVisor replaces say so where they are marked
(`tests.conftest.not_on_gvisor`); the run fails if any other is skipped.

Slow and opt-in like the other set-ups: CI runs it with `pytest -m setups` after installing runsc
(`.ci/run`)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from benchmarks.soak.daemon import PrivateDaemon
from engine.config import Settings
from tests.conftest import IN_CI, require_docker, require_root_tools
from tests.docker.test_setups import ROOT, SUITE_TIMEOUT_S

pytestmark = [pytest.mark.setups, pytest.mark.timeout(1800)]
RUNSC = "/usr/bin/runsc"
# gVisor's netstack cannot set up a network in the root namespace here (docs/security.md, gVisor):
# the sandbox gets none from runsc; a network=True session is refused by lci instead.
RUNTIMES: dict[str, dict[str, object]] = {
    "runsc": {"path": RUNSC, "runtimeArgs": ["--network=none"]}
}
HOSTILE = [
    "tests/core/test_limits.py",
    "tests/core/test_fidelity.py",
    "tests/core/test_syscall_filter.py",
    "tests/core/test_network.py",
]


@pytest.fixture
def gvisor_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateDaemon]:
    require_root_tools("unshare", "dockerd", "docker", "ip")
    if not os.access(RUNSC, os.X_OK):
        reason = f"needs gVisor at {RUNSC} (apt-get install runsc)"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    require_docker(Settings())
    daemon = PrivateDaemon(tmp_path_factory.mktemp("gvisor"), runtimes=RUNTIMES)
    try:
        daemon.start()
        daemon.load(Settings().docker_image)
        yield daemon
    finally:
        daemon.stop()


def test_the_docker_suite_and_the_hostile_cells_on_gvisor(gvisor_daemon: PrivateDaemon) -> None:
    env = {
        **gvisor_daemon.env,
        "LCI_DOCKER_RUNTIME": "runsc",
        "CI": os.environ.get("CI", "true"),
    }
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rsx"]
    argv += ["-m", "not setups", "-k", "docker", "tests/docker", *HOSTILE]
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
    failed = [line for line in lines if line.startswith(("FAILED", "ERROR"))]
    tail = "\n".join([*lines[-60:], *failed])
    assert result.returncode == 0 and " passed" in tail, f"failed on gVisor:\n{tail}"
    # Only the tests marked with their reason may be left out or fail, and each says why.
    skipped = [line for line in lines if line.startswith("SKIPPED")]
    assert all("not under gVisor: " in line for line in skipped), "\n".join(skipped)
    expected = [line for line in lines if line.startswith("XFAIL")]
    assert all("under gVisor: " in line for line in expected), "\n".join(expected)
