"""Sessions on a Ray cluster: what a replica adds per call, and sessions started per second.

    python -m benchmarks.cluster_bench [--quick]

A real local cluster (token auth, its own temp dir, torn down at the end) and two servers: `lci
serve --ray-address` (a replica: its sessions are actors on the cluster's nodes) and a plain local
`lci serve`. Measured in alternating rounds on the same machine:

- `1+1` through the replica against local serve (the replica's overhead per call: one Ray actor
  call more than local), and creating a session in each;
- sessions created per second through the replica with one lci node, then with two. On this
  machine both nodes share its cores (and the replica, the servers, the sandboxes): the second node
  adds no CPU, only a second raylet and worker pool. On separate machines each node brings its own
  cores, and the rate grows with the nodes until the replicas' Ray calls are the limit.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import httpx

from benchmarks.common import REPO, LocalServer, plot_groups, progress, save, summarize

LIMITS = '{"timeout_s": 30, "memory_mb": 256, "max_procs": 64, "disk_mb": 32}'


def serve(state_dir: str, args: list[str]) -> LocalServer:
    return LocalServer(state_dir, args, {"LCI_LIMITS": LIMITS, "LCI_MAX_SESSIONS": "256"})


@contextmanager
def ray_cluster(temp_dir: str, state_dir: str) -> Iterator[Any]:
    """A one-node cluster (more with `add_node`); Ray reads the auth settings when imported."""
    os.environ.update(
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN=secrets.token_hex(24),
        RAY_USAGE_STATS_ENABLED="0",
        LCI_STATE_DIR=state_dir,  # the nodes' (inherited by their workers)
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        # Ray's test cluster writes its address under this directory (otherwise /tmp/ray, which a
        # fresh machine does not have, and where another Ray user's `ray.init()` would find it).
        RAY_TMPDIR=temp_dir,
    )
    os.makedirs(os.path.join(temp_dir, "ray"))
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            **node_args(),
            "include_dashboard": False,
            "temp_dir": temp_dir,
        },
    )
    try:
        yield cluster
    finally:
        cluster.shutdown()


def node_args() -> dict[str, Any]:
    return {"num_cpus": 1, "resources": {"lci": 64}, "object_store_memory": 80 << 20}


def execute_rounds(clients: dict[str, httpx.Client], count: int) -> dict[str, list[float]]:
    """`1+1` in one session of each server, alternating in rounds."""
    ids = {name: c.post("/v1/sessions", json={}).json()["id"] for name, c in clients.items()}
    samples: dict[str, list[float]] = {name: [] for name in clients}
    rounds = 10
    for round_number in range(rounds + 1):
        for name, client in clients.items():
            batch = []
            for _ in range(count // rounds):
                started = time.perf_counter()
                reply = client.post(f"/v1/sessions/{ids[name]}/execute", json={"code": "1+1"})
                batch.append(time.perf_counter() - started)
                assert reply.json()["outputs"][-1]["data"]["text/plain"] == "2", reply.text
            if round_number:  # the first round warms up
                samples[name] += batch
        progress(f"1+1 through the replica and local serve: round {round_number}/{rounds}")
    for name, client in clients.items():
        client.delete(f"/v1/sessions/{ids[name]}")
    return samples


def create_rounds(clients: dict[str, httpx.Client], count: int) -> dict[str, list[float]]:
    """Create and close a session, one at a time, alternating between the servers."""
    samples: dict[str, list[float]] = {name: [] for name in clients}
    for index in range(count):
        for name, client in clients.items():
            started = time.perf_counter()
            reply = client.post("/v1/sessions", json={})
            samples[name].append(time.perf_counter() - started)
            assert reply.status_code == 201, reply.text
            client.delete(f"/v1/sessions/{reply.json()['id']}")
        progress(f"create a session: {index + 1}/{count}")
    return samples


def sessions_per_second(url: str, count: int, concurrency: int) -> dict[str, Any]:
    """Start `count` sessions with `concurrency` clients at once; then close them."""

    def one(_: int) -> dict[str, Any]:
        with httpx.Client(base_url=url, timeout=120) as client:
            reply = client.post("/v1/sessions", json={})
            assert reply.status_code == 201, reply.text
            info: dict[str, Any] = reply.json()
            return info

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        made = list(pool.map(one, range(count)))
    elapsed = time.perf_counter() - started
    nodes = sorted({str(info.get("node_id")) for info in made})
    with httpx.Client(base_url=url, timeout=60) as client:
        for info in made:
            client.delete(f"/v1/sessions/{info['id']}")
    return {
        "sessions": count,
        "concurrency": concurrency,
        "seconds": elapsed,
        "per_second": count / elapsed,
        "nodes_used": len(nodes),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small sample counts (CI)")
    args = parser.parse_args()
    calls, creates, burst = (200, 5, 8) if args.quick else (1000, 20, 24)
    progress(f"cluster benchmark: {calls} calls, {creates} creations, bursts of {burst}")
    temp_dir = tempfile.mkdtemp(prefix="lrayb", dir="/tmp")  # Ray's socket paths must be short
    state_root = tempfile.mkdtemp(prefix="lci-cluster-bench-")
    local_state, node_state = f"{state_root}/local", f"{state_root}/nodes"
    results: dict[str, Any] = {}
    try:
        with ray_cluster(temp_dir, node_state) as cluster:
            progress("cluster up (one lci node); starting a replica and local serve")
            replica = serve(f"{state_root}/replica", ["--ray-address", cluster.address])
            local = serve(local_state, [])
            try:
                with (
                    httpx.Client(base_url=replica.url, timeout=120) as r,
                    httpx.Client(base_url=local.url, timeout=120) as loc,
                ):
                    clients = {"replica": r, "local": loc}
                    calls_s = execute_rounds(clients, calls)
                    create_s = create_rounds(clients, creates)
                progress(f"{burst} sessions at once, one node")
                one_node = sessions_per_second(replica.url, burst, 4)
                cluster.add_node(**node_args())
                cluster.wait_for_nodes()
                progress(f"{burst} sessions at once, two nodes")
                two_nodes = sessions_per_second(replica.url, burst, 4)
                local_rate = sessions_per_second(local.url, burst, 4)
            finally:
                replica.close()
                local.close()
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)
        shutil.rmtree(state_root, ignore_errors=True)
    execute = {name: summarize(values) for name, values in calls_s.items()}
    create = {name: summarize(values) for name, values in create_s.items()}
    overhead = execute["replica"]["p50_ms"] - execute["local"]["p50_ms"]
    results = {
        "execute_1plus1": execute,
        "create_session": create,
        "replica_overhead_per_call_p50_ms": overhead,
        "sessions_per_second": {"one_node": one_node, "two_nodes": two_nodes, "local": local_rate},
        "note": "both nodes run on this machine and share its cores",
    }
    path = save(
        "cluster",
        results,
        {
            "1+1, local serve (p50)": execute["local"]["p50_ms"],
            "1+1, through a replica (p50)": execute["replica"]["p50_ms"],
            "create, local serve (p50)": create["local"]["p50_ms"],
            "create, through a replica (p50)": create["replica"]["p50_ms"],
        },
        "milliseconds (log scale)",
    )
    plot_groups(
        path.with_name("cluster_rate.png"),
        "sessions started per second (nodes share this machine's cores)",
        {
            "": {
                "lci replica, 1 node": one_node["per_second"],
                "lci replica, 2 nodes": two_nodes["per_second"],
                "lci local serve": local_rate["per_second"],
            }
        },
    )
    for name in ("local", "replica"):
        e, c = execute[name], create[name]
        print(
            f"{name:8} 1+1 p50 {e['p50_ms']:.2f} ms p99 {e['p99_ms']:.2f} ms   "
            f"create p50 {c['p50_ms']:.0f} ms"
        )
    print(f"replica overhead per call (p50): {overhead:.2f} ms (target <= 2 ms)")
    for label, rate in (("1 node", one_node), ("2 nodes", two_nodes), ("local", local_rate)):
        print(f"sessions/s, {label:7}: {rate['per_second']:.2f} ({rate['sessions']} at once by 4)")
    print("the two nodes share this machine's cores; on separate machines each adds its own")
    print(f"results: {path} (+ .png, cluster_rate.png)")


if __name__ == "__main__":
    main()
