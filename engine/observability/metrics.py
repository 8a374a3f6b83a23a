"""The engine's observer as Prometheus metrics (the one module importing `prometheus_client`).

Events (a session started, an execution ended, a refusal ...) update counters and histograms as they
happen; what is a state rather than an event (live sessions, sessions per owner, the memory budget,
what live sessions use) is read when scraped, from a `Live` snapshot the server provides. Every
label has a small fixed set of values: no session ids, owners only hashed, and at most
`OWNER_SERIES` of them (the rest are summed as "other").

Each `Metrics` has its own registry, so two servers in one process do not collide.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from threading import Thread
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client import start_http_server as _start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from engine import observe

# The `_created` series double the output for what Prometheus already knows (process start).
disable_created_metrics()  # type: ignore[no-untyped-call]
OWNER_SERIES = 20
START_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
RUN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
WAIT_BUCKETS = (0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30)
UPSTREAM_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


@dataclass
class Live:
    """What is true now, read at each scrape. Keys of `sessions` are (backend, surface)."""

    sessions: dict[tuple[str, str], int] = field(default_factory=dict)
    owners: dict[str, int] = field(default_factory=dict)  # owner hash -> live sessions
    budget_used_bytes: int = 0
    budget_bytes: int = 0
    running_executions: int = 0
    usage: dict[tuple[str, str], float] = field(default_factory=dict)  # (backend, figure) -> sum


class Metrics(observe.Observer):
    """Counters and histograms fed by the engine's events, and a collector of `live()`."""

    def __init__(self, live: Callable[[], Live]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry

        def counter(name: str, text: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(name, text, labels, registry=r)

        def histogram(name: str, text: str, labels: tuple[str, ...], buckets: Any) -> Histogram:
            return Histogram(name, text, labels, registry=r, buckets=buckets)

        self.created = counter("lci_sessions_created", "Sessions started.", ("backend", "surface"))
        self.start_failed = counter(
            "lci_session_start_failures", "Sessions that failed to start.", ("backend", "surface")
        )
        self.closed = counter(
            "lci_sessions_closed", "Sessions closed.", ("backend", "surface", "reason")
        )
        self.lost = counter(
            "lci_sessions_lost", "Sessions whose files were lost.", ("backend", "surface")
        )
        self.start = histogram(
            "lci_session_start_seconds",
            "Time to a ready session, by how its sandbox was started.",
            ("backend", "path"),
            START_BUCKETS,
        )
        self.executions = histogram(
            "lci_execution_seconds", "Executions, by outcome.", ("backend", "outcome"), RUN_BUCKETS
        )
        self.slot_wait = histogram(
            "lci_execution_slot_wait_seconds", "Waits for an execution slot.", (), WAIT_BUCKETS
        )
        self.refused = counter(
            "lci_capacity_refusals", "Requests refused by a cap (429).", ("cap",)
        )
        self.restarts = counter(
            "lci_sandbox_restarts", "Fresh interpreters, by reason.", ("backend", "reason")
        )
        self.kills = counter("lci_sandbox_kills", "Sandboxes killed.", ("backend", "reason"))
        self.pool_depth = Gauge(
            "lci_warm_pool_ready", "Sandboxes waiting in warm pools.", ("backend",), registry=r
        )
        self.refills = counter(
            "lci_warm_pool_refills", "Sandboxes started for warm pools.", ("backend", "result")
        )
        self.claims = counter(
            "lci_warm_pool_claims", "Claims from warm pools (hit or miss).", ("backend", "result")
        )
        self.file_bytes = counter(
            "lci_file_bytes", "Bytes through the file APIs.", ("direction", "surface")
        )
        self.upstream = histogram(
            "lci_upstream_seconds",
            "Calls to the model server (one streamed round each).",
            ("outcome",),
            UPSTREAM_BUCKETS,
        )
        self.tokens = counter("lci_upstream_tokens", "Tokens the model server reported.", ("kind",))
        self.rounds = counter("lci_loop_rounds", "Rounds of the code-interpreter loop.")
        self.web = counter("lci_web_calls", "Web tool calls.", ("tool", "status"))
        self.requests = histogram(
            "lci_http_request_seconds",
            "HTTP requests, by surface and status class.",
            ("surface", "status"),
            RUN_BUCKETS,
        )
        r.register(_LiveCollector(live))

    # -- the observer ----------------------------------------------------------------------------
    def session_started(self, backend: str, surface: str, path: str, seconds: float) -> None:
        self.created.labels(backend, surface).inc()
        self.start.labels(backend, path).observe(seconds)

    def session_start_failed(self, backend: str, surface: str) -> None:
        self.start_failed.labels(backend, surface).inc()

    def session_closed(self, backend: str, surface: str, reason: str) -> None:
        self.closed.labels(backend, surface, reason).inc()

    def session_lost(self, backend: str, surface: str) -> None:
        self.lost.labels(backend, surface).inc()

    def execution_finished(self, backend: str, outcome: str, seconds: float) -> None:
        self.executions.labels(backend, outcome).observe(seconds)

    def execution_slot_waited(self, seconds: float) -> None:
        self.slot_wait.observe(seconds)

    def capacity_refused(self, cap: str) -> None:
        self.refused.labels(cap).inc()

    def sandbox_restarted(self, backend: str, reason: str) -> None:
        self.restarts.labels(backend, reason).inc()

    def sandbox_killed(self, backend: str, reason: str) -> None:
        self.kills.labels(backend, reason).inc()

    def pool_depth_changed(self, backend: str, delta: int) -> None:
        self.pool_depth.labels(backend).inc(delta)

    def pool_refilled(self, backend: str, ok: bool) -> None:
        self.refills.labels(backend, "ok" if ok else "failed").inc()

    def pool_claimed(self, backend: str, hit: bool) -> None:
        self.claims.labels(backend, "hit" if hit else "miss").inc()

    def file_transferred(self, direction: str, size: int) -> None:
        self.file_bytes.labels(direction, observe.surface.get()).inc(size)

    def upstream_called(self, outcome: str, seconds: float) -> None:
        self.upstream.labels(outcome).observe(seconds)

    def upstream_tokens(self, input_tokens: int, output_tokens: int) -> None:
        self.tokens.labels("input").inc(input_tokens)
        self.tokens.labels("output").inc(output_tokens)

    def loop_round(self) -> None:
        self.rounds.inc()

    def web_called(self, tool: str, outcome: str) -> None:
        self.web.labels(tool, outcome).inc()

    def request_finished(self, surface: str, status: int, seconds: float) -> None:
        self.requests.labels(surface, f"{status // 100}xx").observe(seconds)

    # -- exposition ------------------------------------------------------------------------------
    def exposition(self) -> tuple[bytes, str]:
        """The text format's body and content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def serve(self, port: int, host: str = "127.0.0.1") -> Callable[[], None]:
        """Serve /metrics on a port of its own (a thread); returns the function that stops it."""
        server, thread = _start_http_server(port, host, registry=self.registry)

        def stop(thread: Thread = thread) -> None:
            server.shutdown()
            server.server_close()
            thread.join(5)

        return stop


class _LiveCollector(Collector):
    def __init__(self, live: Callable[[], Live]) -> None:
        self._live = live

    def describe(self) -> list[Metric]:
        return []  # unchecked: its families are built at each scrape

    def collect(self) -> Iterator[Metric]:
        live = self._live()
        sessions = GaugeMetricFamily(
            "lci_sessions_live", "Live sessions.", labels=("backend", "surface")
        )
        for (backend, surface), count in sorted(live.sessions.items()):
            sessions.add_metric((backend, surface), count)
        yield sessions
        owners = GaugeMetricFamily(
            "lci_owner_sessions",
            f"Live sessions per owner (hashed; past the {OWNER_SERIES} largest, 'other').",
            labels=("owner",),
        )
        for owner, count in _bounded(live.owners):
            owners.add_metric((owner,), count)
        yield owners
        yield GaugeMetricFamily(
            "lci_memory_budget_used_bytes",
            "Memory (and tmpfs disk) charged to live sessions.",
            value=live.budget_used_bytes,
        )
        yield GaugeMetricFamily(
            "lci_memory_budget_bytes", "The memory budget of all sessions.", value=live.budget_bytes
        )
        yield GaugeMetricFamily(
            "lci_executions_running", "Executions running now.", value=live.running_executions
        )
        usage = GaugeMetricFamily(
            "lci_session_usage",
            "What live sessions use, summed (last measurement): cpu_seconds, memory_bytes, "
            "memory_peak_bytes, disk_bytes, net_rx_bytes, net_tx_bytes.",
            labels=("backend", "figure"),
        )
        for (backend, figure), value in sorted(live.usage.items()):
            usage.add_metric((backend, figure), value)
        yield usage


def _bounded(owners: dict[str, int]) -> list[tuple[str, int]]:
    ranked = sorted(owners.items(), key=lambda item: (-item[1], item[0]))
    kept = ranked[:OWNER_SERIES]
    rest = sum(count for _, count in ranked[OWNER_SERIES:])
    return kept + ([("other", rest)] if rest else [])
