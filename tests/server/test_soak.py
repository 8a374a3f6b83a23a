"""The soak harness against a real `lci serve`: each injected fault on its own, then all of them
together on each backend. Every run must keep the promises: no 500, no hang, every execution
returns an outcome, no lost file, no silent state loss, no stuck session, nothing leaked."""

from __future__ import annotations

import pytest

from benchmarks.soak import SoakConfig, broken_promises, run_soak
from benchmarks.soak.faults import BACKEND_FAULTS, COMMON_FAULTS
from engine.config import Settings
from tests.conftest import require_docker, require_root_tools

PRIVATE_DAEMON_TOOLS = ("unshare", "ip", "dockerd", "docker")

pytestmark = pytest.mark.slow


def soak(
    backend: str,
    faults: list[str],
    *,
    clients: int = 3,
    duration_s: float = 8.0,
    private_daemon: bool = False,
) -> dict:  # type: ignore[type-arg]
    config = SoakConfig(
        backend=backend,
        clients=clients,
        duration_s=duration_s,
        fault_every_s=2.0,
        faults=faults,
        private_daemon=private_daemon,
    )
    result = run_soak(config)
    assert not broken_promises(result), (broken_promises(result), result["errors"])
    assert result["requests"] > 0
    return result


@pytest.mark.parametrize("fault", [*BACKEND_FAULTS["subprocess"], *COMMON_FAULTS])
def test_each_fault_alone(fault: str) -> None:
    result = soak("subprocess", [fault])
    applied = [line for line in result["faults"] if "no " not in line.split(":", 1)[1][:4]]
    assert applied, f"{fault} was never applied: {result['faults']}"


def test_docker_kill_alone() -> None:
    require_docker(Settings())
    result = soak("docker", ["docker_kill"])
    assert any("no container" not in line for line in result["faults"]), result["faults"]


def test_daemon_restart_alone() -> None:
    # On a daemon of the soak's own: restarting the host's would stop other engines' sandboxes.
    require_docker(Settings())
    require_root_tools(*PRIVATE_DAEMON_TOOLS)
    config = SoakConfig(
        backend="docker",
        clients=3,
        duration_s=20.0,
        fault_every_s=6.0,
        faults=["daemon_restart"],
        private_daemon=True,
    )
    result = run_soak(config)
    assert not broken_promises(result), (broken_promises(result), result["errors"])
    # The probe session of each restart said it was lost (a 410, else a broken promise above).
    probed = [line for line in result["faults"] if "a session from before answered 410" in line]
    assert probed, result["faults"]
    assert result["daemon_restarts"] == len(result["faults"])
    # Sessions started and ran on the restarted daemon.
    late = [t for t, op, status in result["timeline"] if op == "create" and status == 201]
    assert late and max(late) > 8.0, result["timeline"]


@pytest.mark.parametrize("backend", ["subprocess", "docker"])
def test_short_soak_with_every_fault(backend: str) -> None:
    faults = BACKEND_FAULTS[backend] + COMMON_FAULTS
    if backend == "docker":
        require_docker(Settings())
        require_root_tools(*PRIVATE_DAEMON_TOOLS)
        faults.append("daemon_restart")
    result = soak(backend, faults, clients=4, duration_s=15.0, private_daemon=backend == "docker")
    assert len(result["faults"]) >= 2  # slow ones (a slow client, a full disk) take seconds
    assert result["statuses"].get("200", 0) > 0
