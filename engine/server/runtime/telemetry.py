"""The server's observability while it runs: the Prometheus observer (on by default: its events
cost a counter increment each), tracing (off unless configured), the `/metrics` route (outside
the OpenAPI document; behind the gate like every route when keys are set) or a port of its own on
the loopback address, and the live figures read at each scrape.

What sessions use is measured when scraped (at most every `USAGE_MAX_AGE_S` per session, all
sessions at once within `USAGE_TIMEOUT_S`), or every `USAGE_MAX_AGE_S` in the background when
/metrics has a port of its own (that server cannot wait for the event loop)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, Request
from fastapi.responses import Response

from engine import observe
from engine.core.manager import SessionManager
from engine.models import MIB
from engine.observability.metrics import Live, Metrics
from engine.server.runtime.state import ServerState

USAGE_MAX_AGE_S = 10.0
USAGE_TIMEOUT_S = 2.0
_FIGURES = {
    "cpu_seconds": "cpu_s",
    "memory_bytes": "memory_bytes",
    "memory_peak_bytes": "memory_peak_bytes",
    "disk_bytes": "disk_bytes",
    "net_rx_bytes": "net_rx_bytes",
    "net_tx_bytes": "net_tx_bytes",
}

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """The Prometheus text format; 404 when metrics are off or served on a port of their own."""
    exporter = getattr(request.app.state, "lci_metrics", None)
    if exporter is None:
        return Response(status_code=404, content="metrics are not served here\n")
    state: ServerState = request.app.state.lci
    await measure(state.manager)
    body, content_type = exporter.exposition()
    return Response(body, media_type=content_type)


async def measure(manager: SessionManager) -> None:
    """Measure what live sessions use, where the last measurement is older than
    USAGE_MAX_AGE_S; sessions that take longer than USAGE_TIMEOUT_S keep their previous one."""
    cutoff = time.time() - USAGE_MAX_AGE_S
    stale = [s for s in manager.list() if s.usage is None or s.usage.measured_at < cutoff]
    if not stale:
        return
    measuring = asyncio.gather(*(s.measure() for s in stale), return_exceptions=True)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(measuring, USAGE_TIMEOUT_S)


def live(manager: SessionManager) -> Live:
    """The figures of now."""
    figures = Live()
    sessions: Counter[tuple[str, str]] = Counter()
    usage: Counter[tuple[str, str]] = Counter()
    for session in manager.list():
        sessions[session.backend.value, session.surface] += 1
        if session.usage is not None:
            for figure, name in _FIGURES.items():
                value = getattr(session.usage, name)
                if value is not None:
                    usage[session.backend.value, figure] += value
    figures.sessions, figures.usage = dict(sessions), dict(usage)
    owners: Counter[str] = Counter()
    for owner, count in manager.capacity.owners().items():
        owners[observe.hash_owner(owner)] += count
    figures.owners = dict(owners)
    figures.budget_used_bytes = manager.capacity.charged_mb * MIB
    figures.budget_bytes = manager.capacity.settings.memory_budget_mb * MIB
    figures.running_executions = manager.capacity.running
    return figures


@asynccontextmanager
async def observing(state: ServerState, app_state: object) -> AsyncIterator[None]:
    """Install what the options ask for while the server runs; `app_state` gets `lci_metrics`
    (the exporter the /metrics route serves) unless metrics are off or on a port of their own."""
    options = state.options
    async with contextlib.AsyncExitStack() as stack:
        if options.metrics:
            exporter = Metrics(lambda: live(state.manager))
            previous = observe.install(exporter)
            stack.callback(observe.install, previous)
            if options.metrics_port is not None:
                stack.callback(exporter.serve(options.metrics_port, options.metrics_host))
                refresher = asyncio.get_running_loop().create_task(_refresh(state.manager))
                stack.callback(refresher.cancel)
            else:
                app_state.lci_metrics = exporter  # type: ignore[attr-defined]
        if options.tracing:
            from engine.observability import tracing

            stack.callback(tracing.install(options.otlp_endpoint).close)
        yield


async def _refresh(manager: SessionManager) -> None:
    while True:
        await asyncio.sleep(USAGE_MAX_AGE_S)
        with contextlib.suppress(Exception):  # a failed measurement keeps the previous one
            await measure(manager)
