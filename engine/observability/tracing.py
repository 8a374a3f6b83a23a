"""The engine's spans as OpenTelemetry traces (with `metrics`, the only modules importing
`opentelemetry`; an optional extra: `pip install 'lci[otel]'`).

`install` makes every `observe.span(...)` an OpenTelemetry span, nested in the current one: the
server opens one per request, and within it come the session starts, executions, model rounds,
upstream calls, tool calls and file transfers of that request. Spans go to the given exporter (the
tests' in-memory one), else by OTLP over HTTP to `endpoint` (or wherever the standard
`OTEL_EXPORTER_OTLP_*` variables say).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from engine import observe

try:
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
except ImportError:  # pragma: no cover - the extra is not installed
    trace = None  # type: ignore[assignment]


class TracingUnavailable(RuntimeError):
    """OpenTelemetry (or its OTLP exporter) is not installed."""


class Tracing:
    """Installed tracing; `close` flushes what is pending and uninstalls it."""

    def __init__(self, provider: Any, exporter: Any, previous: observe.SpanFactory) -> None:
        self.provider = provider
        self.exporter = exporter
        self._previous = previous

    def close(self) -> None:
        observe.install_spans(self._previous if self._previous is not observe._no_span else None)
        self.provider.shutdown()


def install(endpoint: str | None = None, exporter: Any = None, service: str = "lci") -> Tracing:
    """Trace from now on. `exporter`: a span exporter to use (else OTLP over HTTP to
    `endpoint`). Raises TracingUnavailable when OpenTelemetry is not installed."""
    if trace is None:
        raise TracingUnavailable(
            "tracing needs OpenTelemetry: pip install 'lci[otel]' (opentelemetry-sdk and "
            "opentelemetry-exporter-otlp-proto-http)"
        )
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    if exporter is None:
        exporter = _otlp(endpoint)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    tracer = provider.get_tracer("lci")

    def span(name: str, attributes: observe.Attributes) -> AbstractContextManager[Any]:
        named = {f"lci.{key}": value for key, value in attributes.items()}
        return tracer.start_as_current_span(name, attributes=named, record_exception=True)

    return Tracing(provider, exporter, observe.install_spans(span, _trace_id))


def _trace_id() -> str:
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else ""


def _otlp(endpoint: str | None) -> SpanExporter:
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError as exc:
        raise TracingUnavailable(
            "tracing exports by OTLP: pip install opentelemetry-exporter-otlp-proto-http"
        ) from exc
    if endpoint is None:
        return OTLPSpanExporter()  # the OTEL_EXPORTER_OTLP_* variables, or localhost:4318
    return OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces")
