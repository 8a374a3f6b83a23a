"""What observability costs: the `1+1` round trip over HTTP and the session start (`POST
/v1/sessions`), against three `lci serve` processes run side by side in the same run: metrics off
(`--no-metrics`), metrics on (the default), and metrics with tracing (`--tracing`, spans exported by
OTLP/HTTP to a sink in this process that answers every export at once). Rounds alternate between
the three servers, so all see the same (shared, drifting) machine. Targets: < 5% with metrics,
< 15% with tracing.

    python -m benchmarks.observability_bench [--quick]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from benchmarks.common import RESULTS, LocalServer, plot_groups, progress, save, summarize

CONFIGS = {"off": ["--no-metrics"], "metrics": [], "tracing": ["--tracing"]}


class _Sink(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def start_server(state_dir: str, args: list[str], otlp: str) -> LocalServer:
    """Tracing, when on, exports to the local sink at `otlp`."""
    env = {"LCI_SERVER_OTLP_ENDPOINT": otlp}
    return LocalServer(state_dir, args, env, drop=("LCI_", "OTEL_"))


def _trip(client: httpx.Client, path: str) -> float:
    started = time.perf_counter()
    reply = client.post(path, json={"code": "1+1"})
    elapsed = time.perf_counter() - started
    assert reply.json()["outputs"][-1]["data"]["text/plain"] == "2"
    return elapsed


def _start(client: httpx.Client) -> float:
    started = time.perf_counter()
    created = client.post("/v1/sessions", json={})
    elapsed = time.perf_counter() - started
    client.delete(f"/v1/sessions/{created.json()['id']}")
    return elapsed


def measure(
    servers: dict[str, LocalServer], trips: int, starts: int, rounds: int
) -> dict[str, Any]:
    """Request by request, the servers take turns (in a rotating order): each sample of one
    has neighbours of the others taken within milliseconds."""
    samples = {name: {"round_trip": [], "session_start": []} for name in servers}
    clients = {name: httpx.Client(base_url=s.url, timeout=60) for name, s in servers.items()}
    paths = {}
    for name, client in clients.items():
        paths[name] = f"/v1/sessions/{client.post('/v1/sessions', json={}).json()['id']}/execute"
    names = list(servers)
    for number in range(rounds + 1):
        for i in range(trips // rounds):
            for name in names[i % 3 :] + names[: i % 3]:
                took = _trip(clients[name], paths[name])
                if number:  # the first round warms everything up
                    samples[name]["round_trip"].append(took)
        for i in range(max(1, starts // rounds)):
            for name in names[i % 3 :] + names[: i % 3]:
                took = _start(clients[name])
                if number:
                    samples[name]["session_start"].append(took)
            time.sleep(0.1)  # let the warm pools refill, as between real clients
        progress(f"observability: round {number}/{rounds}")
    for client in clients.values():
        client.close()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small sample counts (CI)")
    quick = parser.parse_args().quick
    trips, starts, rounds = (300, 30, 6) if quick else (3000, 200, 10)
    sink = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    otlp = f"http://127.0.0.1:{sink.server_address[1]}"
    progress(f"observability benchmark: {trips} round trips, {starts} session starts per server")
    with tempfile.TemporaryDirectory(prefix="lci-bench-") as state_dir:
        servers: dict[str, LocalServer] = {}
        try:
            for name, args in CONFIGS.items():
                servers[name] = start_server(f"{state_dir}/{name}", args, otlp)
            samples = measure(servers, trips, starts, rounds)
        finally:
            for server in servers.values():
                server.close()
            sink.shutdown()
    report(samples, quick)


def report(samples: dict[str, dict[str, list[float]]], quick: bool) -> None:
    results: dict[str, Any] = {"mode": "quick" if quick else "full", "configs": CONFIGS}
    bars: dict[str, dict[str, float]] = {}
    for what in ("round_trip", "session_start"):
        base = summarize(samples["off"][what])["p50_ms"]
        results[what] = {}
        for name in CONFIGS:
            stats = summarize(samples[name][what])
            stats["overhead_p50_pct"] = round(100 * (stats["p50_ms"] / base - 1), 1)
            results[what][name] = stats
            bars.setdefault(what, {})[name] = stats["p50_ms"]
            print(
                f"{what:13s} {name:8s} p50 {stats['p50_ms']:7.2f} ms  p90 {stats['p90_ms']:7.2f} "
                f"ms  mean {stats['mean_ms']:7.2f} ms  vs off {stats['overhead_p50_pct']:+5.1f}%"
            )
    flat = {f"{what} {name} (ms)": v for what, b in bars.items() for name, v in b.items()}
    path = save("observability", results, flat, "p50 ms")
    plot_groups(RESULTS / "observability.png", "observability: p50 ms, off vs on", bars)
    progress(f"wrote {path}")


if __name__ == "__main__":
    main()
