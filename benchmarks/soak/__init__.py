"""`python -m benchmarks.soak`: lci serve under load and injected faults; see `runner`."""

from benchmarks.soak.runner import SoakConfig, broken_promises, run_soak

__all__ = ["SoakConfig", "broken_promises", "run_soak"]
