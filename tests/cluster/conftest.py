"""One real two-node Ray cluster on this machine for the whole module (token auth, own temp dir,
quick node-death detection), shared by the cluster tests and torn down afterwards: every actor,
Ray process and sandbox it started must be gone."""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
import ray
from ray._private.authentication_test_utils import reset_auth_token_state
from ray.cluster_utils import Cluster

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "lci"
SESSIONS_PER_NODE = 3
# A dead node is noticed within a few seconds, not Ray's default of many; lenient enough that a
# loaded machine's slow answers do not look like a death.
HEALTH = {
    "health_check_initial_delay_ms": 0,
    "health_check_period_ms": 500,
    "health_check_timeout_ms": 1000,
    "health_check_failure_threshold": 4,
}


@dataclass
class LocalCluster:
    cluster: Any
    head: Any
    worker: Any
    address: str
    env: dict[str, str]

    @property
    def head_id(self) -> str:
        return str(self.head.node_id)

    @property
    def worker_id(self) -> str:
        return str(self.worker.node_id)


def node_args(resources: dict[str, float]) -> dict[str, Any]:
    return {
        "num_cpus": 1,
        "resources": resources,
        "object_store_memory": 80 << 20,
    }


def lci_processes(temp_dir: str) -> list[psutil.Process]:
    """Processes of this cluster: Ray's own (they name its temp dir) and sandboxes (their
    environment names it too, inherited through the actor's worker)."""
    found = []
    for process in psutil.process_iter(["cmdline", "environ"]):
        with_dir = " ".join(process.info["cmdline"] or [])
        environ = process.info["environ"] or {}
        if temp_dir in with_dir or environ.get("LCI_TEST_CLUSTER") == temp_dir:
            found.append(process)
    return found


_SEEN: set[psutil.Process] = set()
# What ran before the cluster started (servers and sandboxes of other tests, which end on their
# own schedule): not the cluster's to clean up.
_BEFORE: set[psutil.Process] = set()


def remember_processes() -> None:
    """Note every process this test process started since the cluster did (Ray's, workers,
    sandboxes): all must be gone after the teardown, whichever node they ran on."""
    _SEEN.update(set(psutil.Process().children(recursive=True)) - _BEFORE)


@pytest.fixture(scope="package")  # gone before the rest of the suite runs
def local_cluster() -> Iterator[LocalCluster]:
    _BEFORE.update(psutil.Process().children(recursive=True))
    temp_dir = tempfile.mkdtemp(prefix="lray", dir="/tmp")  # short: Ray's socket paths are long
    state_dir = Path(tempfile.mkdtemp(prefix="lci-cluster-")) / "state"  # Ray opens up its own
    env = {
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(24),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        "LCI_TEST_CLUSTER": temp_dir,
        "LCI_STATE_DIR": str(state_dir),  # the nodes' own
        "RAY_USAGE_STATS_ENABLED": "0",
        # Ray's test cluster writes its address for `ray.init()` to find under this directory
        # (otherwise /tmp/ray, which a fresh machine does not have, and where it would send
        # another Ray user's `ray.init()` to this cluster).
        "RAY_TMPDIR": temp_dir,
    }
    os.makedirs(os.path.join(temp_dir, "ray"))
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    reset_auth_token_state()  # Ray read the auth mode when it was imported
    cluster = None
    leaked: list[str] = []
    try:
        cluster = Cluster(
            initialize_head=True,
            head_node_args={
                **node_args({"lci": SESSIONS_PER_NODE}),
                "include_dashboard": False,
                "temp_dir": temp_dir,
                "_system_config": HEALTH,
            },
        )
        worker = cluster.add_node(**node_args({"lci": SESSIONS_PER_NODE}))
        cluster.wait_for_nodes()
        ray.init(
            address=cluster.address,
            namespace=NAMESPACE,
            logging_level="warning",
            log_to_driver=False,
        )
        yield LocalCluster(cluster, cluster.head_node, worker, cluster.address, env)
    finally:
        remember_processes()
        if ray.is_initialized():
            leaked = ray.util.list_named_actors()  # every test deletes what it made
            close_every_session()
            ray.shutdown()
        if cluster is not None:
            cluster.shutdown()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        reset_auth_token_state()
    assert not leaked, f"sessions left open by the tests: {leaked}"
    deadline = time.monotonic() + 10
    while (left := alive(temp_dir)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, left
    mounts = [
        line for line in Path("/proc/mounts").read_text().splitlines() if str(state_dir) in line
    ]
    assert not mounts, mounts
    shutil.rmtree(state_dir.parent)
    shutil.rmtree(temp_dir, ignore_errors=True)


def close_every_session() -> None:
    """What a failed test left open: closed properly (its sandbox's mounts removed), then its
    actor killed."""
    actors = [ray.get_actor(name, namespace=NAMESPACE) for name in ray.util.list_named_actors()]
    ray.wait([a.close.remote() for a in actors], num_returns=len(actors), timeout=20)
    for actor in actors:
        ray.kill(actor, no_restart=True)


def alive(temp_dir: str) -> list[str]:
    left = {p for p in _SEEN if p.is_running() and p.status() != psutil.STATUS_ZOMBIE}
    left.update(lci_processes(temp_dir))
    return [" ".join(p.cmdline()) for p in left if p.is_running()]
