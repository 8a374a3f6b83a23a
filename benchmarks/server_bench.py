"""The session API over HTTP: `POST /v1/sessions/{id}/execute` of `1+1` against `lci serve` (a real
process, keep-alive connection), next to the in-process async API round trip and the server's
`GET /health` (the HTTP floor: request, routing and JSON, no sandbox), measured in the same run.

    python -m benchmarks.server_bench [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time

import httpx

from benchmarks.common import LocalServer, progress, save, summarize
from engine import SessionManager
from engine.models import SessionSpec


async def measure(server: LocalServer, count: int) -> dict[str, list[float]]:
    """Rounds alternate between the three, so all see the same (shared, drifting) machine."""
    samples: dict[str, list[float]] = {"http": [], "in_process": [], "health": []}
    rounds = 10
    with httpx.Client(base_url=server.url, timeout=30) as client:
        session_id = client.post("/v1/sessions", json={}).json()["id"]
        path = f"/v1/sessions/{session_id}/execute"
        body = {"code": "1+1"}
        async with SessionManager() as manager:
            session = await manager.create(SessionSpec())
            for round_number in range(rounds + 1):
                batch: dict[str, list[float]] = {key: [] for key in samples}
                for _ in range(count // rounds):
                    started = time.perf_counter()
                    reply = client.post(path, json=body)
                    batch["http"].append(time.perf_counter() - started)
                    assert reply.json()["outputs"][-1]["data"]["text/plain"] == "2"
                    started = time.perf_counter()
                    await session.execute("1+1")
                    batch["in_process"].append(time.perf_counter() - started)
                    started = time.perf_counter()
                    client.get("/health")
                    batch["health"].append(time.perf_counter() - started)
                if round_number:  # the first round warms everything up
                    for key, values in batch.items():
                        samples[key] += values
                progress(f"1+1 over HTTP and in process: round {round_number}/{rounds}")
        client.delete(f"/v1/sessions/{session_id}")
    return samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small sample counts (CI)")
    args = parser.parse_args()
    count = 300 if args.quick else 2000
    progress(f"server benchmark: {count} round trips each")
    with tempfile.TemporaryDirectory(prefix="lci-bench-") as state_dir:
        server = LocalServer(state_dir)
        try:
            samples = asyncio.run(measure(server, count))
        finally:
            server.close()
    http = summarize(samples["http"])
    in_process = summarize(samples["in_process"])
    health = summarize(samples["health"])
    ratio = http["p50_ms"] / in_process["p50_ms"]
    results = {
        "http_execute_1plus1": http,
        "in_process_async_api_1plus1": in_process,
        "http_health_floor": health,
        "ratios": {
            "http_execute_vs_in_process_p50": ratio,
            "http_execute_vs_in_process_p99": http["p99_ms"] / in_process["p99_ms"],
        },
    }
    path = save(
        "server_http",
        results,
        {
            "in-process async API 1+1 (p50)": in_process["p50_ms"],
            "HTTP GET /health (p50)": health["p50_ms"],
            "HTTP POST execute 1+1 (p50)": http["p50_ms"],
            "HTTP POST execute 1+1 (p99)": http["p99_ms"],
        },
        "milliseconds (log scale)",
    )
    print(
        f"in-process async API 1+1      p50 {in_process['p50_ms']:.3f} ms  p99 {in_process['p99_ms']:.3f} ms"
    )
    print(
        f"HTTP GET /health (floor)      p50 {health['p50_ms']:.3f} ms  p99 {health['p99_ms']:.3f} ms"
    )
    print(
        f"HTTP POST execute 1+1         p50 {http['p50_ms']:.3f} ms  p99 {http['p99_ms']:.3f} ms  "
        f"({ratio:.2f}x the in-process round trip at p50)"
    )
    print(f"results: {path} (+ .png)")


if __name__ == "__main__":
    main()
