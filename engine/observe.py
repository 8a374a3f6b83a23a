"""What the engine tells whoever watches it: a small observer interface shared by every layer.

The core and the orchestrator report what they do (a session started by this path in this time, an
execution ended with this outcome, a model round, a refusal by a cap) to the one installed
`Observer`, and open spans with `span(...)`. By default nothing is installed: every call is a method
call that does nothing, so an engine embedded without a server pays nothing for it. The server
installs adapters (`engine/observability/`: Prometheus, OpenTelemetry) that do the work; no
third-party package is imported here, and no layer learns which one watches.

Labels given to observers are bounded by construction: backends, surfaces, paths, outcomes and
reasons are small fixed sets; an owner appears only as `owner_hash` (a short hash); session ids are
never labels (they go into logs and span attributes only).

Context of the request being served (its id, surface, hashed owner) travels in context variables
set by the server's edge, read here by audit logs and by the observers.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from contextvars import ContextVar
from typing import Any

request_id: ContextVar[str] = ContextVar("lci_request_id", default="")
surface: ContextVar[str] = ContextVar("lci_surface", default="")
owner: ContextVar[str] = ContextVar("lci_owner", default="")  # already hashed

audit_log = logging.getLogger("lci.audit")

Attributes = dict[str, str | int | float | bool]
SpanFactory = Callable[[str, Attributes], AbstractContextManager[Any]]


class Observer:
    """Receives what the engine does. Every method here does nothing; adapters override what they
    record. Methods are called on the event loop and must not block."""

    # -- sessions --------------------------------------------------------------------------------
    def session_started(self, backend: str, surface: str, path: str, seconds: float) -> None: ...
    def session_start_failed(self, backend: str, surface: str) -> None: ...
    def session_closed(self, backend: str, surface: str, reason: str) -> None: ...
    def session_lost(self, backend: str, surface: str) -> None: ...

    # -- executions and capacity ---------------------------------------------------------------
    def execution_finished(self, backend: str, outcome: str, seconds: float) -> None: ...
    def execution_slot_waited(self, seconds: float) -> None: ...
    def capacity_refused(self, cap: str) -> None: ...

    # -- sandboxes and warm pools --------------------------------------------------------------
    def sandbox_restarted(self, backend: str, reason: str) -> None: ...
    def sandbox_killed(self, backend: str, reason: str) -> None: ...
    def pool_depth_changed(self, backend: str, delta: int) -> None: ...
    def pool_refilled(self, backend: str, ok: bool) -> None: ...
    def pool_claimed(self, backend: str, hit: bool) -> None: ...

    # -- files, the model server, the loop -----------------------------------------------------
    def file_transferred(self, direction: str, size: int) -> None: ...
    def upstream_called(self, outcome: str, seconds: float) -> None: ...
    def upstream_tokens(self, input_tokens: int, output_tokens: int) -> None: ...
    def loop_round(self) -> None: ...
    def web_called(self, tool: str, outcome: str) -> None: ...

    # -- the HTTP edge ---------------------------------------------------------------------------
    def request_finished(self, surface: str, status: int, seconds: float) -> None: ...


_NOTHING = Observer()
_observer: Observer = _NOTHING
_NULL_SPAN: AbstractContextManager[Any] = contextlib.nullcontext()


def _no_span(name: str, attributes: Attributes) -> AbstractContextManager[Any]:
    return _NULL_SPAN


_span_factory: SpanFactory = _no_span
_trace_id: Callable[[], str] = str  # "" when no tracing is installed


def get() -> Observer:
    """The installed observer (one that does nothing when none is)."""
    return _observer


def install(observer: Observer | None) -> Observer:
    """Make `observer` the one that is told (None: nobody); returns the previous one."""
    global _observer
    previous, _observer = _observer, observer or _NOTHING
    return previous


def install_spans(
    factory: SpanFactory | None, trace_id: Callable[[], str] | None = None
) -> SpanFactory:
    """Make `factory` open every span (None: spans cost nothing), and `trace_id` tell the current
    trace's id (hex); returns the previous factory."""
    global _span_factory, _trace_id
    previous, _span_factory = _span_factory, factory or _no_span
    _trace_id = trace_id or str
    return previous


def trace_id() -> str:
    """The id of the trace being recorded now, "" when none is."""
    return _trace_id()


def span(name: str, **attributes: str | int | float | bool) -> AbstractContextManager[Any]:
    """A span around a unit of work (a session start, an execution, a model round ...), nested in
    the current one; a context manager that does nothing unless tracing is installed."""
    return _span_factory(name, attributes)


def hash_owner(principal: str | None) -> str:
    """A short, stable, non-reversible name of an API key's identity, for labels and logs."""
    if not principal:
        return ""
    return hashlib.sha256(principal.encode()).hexdigest()[:10]


def audit(event: str, **fields: Any) -> None:
    """One audit event (session.create, file.upload, auth.failure ...) on the `lci.audit` logger,
    with the request's context; a JSON log formatter writes the fields as keys."""
    if audit_log.isEnabledFor(logging.INFO):
        fields.setdefault("surface", surface.get())
        fields.setdefault("owner", owner.get())
        audit_log.info(event, extra={"event": event, "fields": fields})
