"""The code-interpreter tool loop: upstream model rounds, code_interpreter calls run through a
`CodeRunner`, results fed back, until the model answers. Knows nothing about HTTP serving or the
sandbox implementation."""

from engine.orchestrator.events import Event, Usage
from engine.orchestrator.loop import Orchestrator
from engine.orchestrator.options import LoopOptions
from engine.orchestrator.runner import CodeRunner
from engine.orchestrator.upstream import RoundRequest, UpstreamClient

__all__ = [
    "CodeRunner",
    "Event",
    "LoopOptions",
    "Orchestrator",
    "RoundRequest",
    "UpstreamClient",
    "Usage",
]
