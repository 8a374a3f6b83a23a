"""The HTTP edge of lci: OpenAI- and DashScope-compatible code-interpreter endpoints and the plain
session API. Translation only: requests become core or orchestrator calls, their results become
wire responses (JSON or SSE). `create_app` builds the ASGI application; `serve` runs it (that is
`lci serve`). Names are imported lazily, so reading `engine.server.runtime.options` needs no web stack."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.server.app import create_app
    from engine.server.run import serve

__all__ = ["create_app", "serve"]

_LOCATIONS = {"create_app": "engine.server.app", "serve": "engine.server.run"}


def __getattr__(name: str) -> Any:
    if name not in _LOCATIONS:
        raise AttributeError(f"module 'engine.server' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_LOCATIONS[name]), name)
