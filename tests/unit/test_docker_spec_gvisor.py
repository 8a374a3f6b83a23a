"""The container plan for gVisor: the exact process limit moves from the host's pids cgroup (which
also holds gVisor's own threads) to RLIMIT_NPROC in the sandbox, for the sandbox and its keeper;
under runc nothing changes. The containers themselves are checked on runsc by
tests/docker/test_gvisor_setup.py."""

from __future__ import annotations

from engine.core.backends.docker.spec import (
    GVISOR_HOST_PIDS,
    GVISOR_PIDS_PER_PROC,
    KEEPER_PROCS,
    ContainerPlan,
    is_gvisor,
)
from engine.models import Limits

LIMITS = Limits(max_procs=40)


def plan(gvisor: bool) -> ContainerPlan:
    return ContainerPlan(
        image="img", limits=LIMITS, workdir="vol", labels={}, name_prefix="lci-x", gvisor=gvisor
    )


def nproc(host: dict[str, object]) -> list[object]:
    return [u for u in host["ulimits"] if u["name"] == "nproc"]  # type: ignore[attr-defined]


def test_runc_keeps_the_exact_pids_limit_and_no_nproc() -> None:
    host, keeper = plan(False).host_args(), plan(False).keeper_host_args()
    assert host["pids_limit"] == 40 and keeper["pids_limit"] == KEEPER_PROCS
    assert nproc(host) == nproc(keeper) == []


def test_gvisor_limits_processes_inside_and_keeps_a_host_backstop() -> None:
    host, keeper = plan(True).host_args(), plan(True).keeper_host_args()
    assert nproc(host) == [{"name": "nproc", "soft": 40, "hard": 40}]
    assert nproc(keeper) == [{"name": "nproc", "soft": KEEPER_PROCS, "hard": KEEPER_PROCS}]
    assert host["pids_limit"] == GVISOR_HOST_PIDS + GVISOR_PIDS_PER_PROC * 40
    assert keeper["pids_limit"] == GVISOR_HOST_PIDS + GVISOR_PIDS_PER_PROC * KEEPER_PROCS


def test_runsc_is_recognised_by_its_program() -> None:
    assert is_gvisor("/usr/bin/runsc") and is_gvisor("io.containerd.runsc.v1")
    assert not is_gvisor("runc") and not is_gvisor("/usr/bin/crun") and not is_gvisor("")
