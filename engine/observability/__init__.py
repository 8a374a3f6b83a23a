"""Adapters of the engine's observer (`engine.observe`) to the tools operators use: Prometheus
metrics (`metrics`), OpenTelemetry traces (`tracing`) and JSON logs (`logs`). Only this package
imports `prometheus_client` and `opentelemetry`; the engine's layers only ever call the observer."""
