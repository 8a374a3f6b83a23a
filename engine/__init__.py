"""lci: a local code interpreter for any LLM.

    from engine import SessionManager, blocking
    with blocking(SessionManager()) as manager:
        print(manager.create().execute("6 * 7").result_text)

Names are imported lazily, so `import engine` stays cheap and never imports the docker SDK.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.api import blocking
    from engine.config import Settings
    from engine.core.manager import SessionManager
    from engine.core.session import Session
    from engine.models import Execution, Limits, Outcome, SessionSpec

__all__ = [
    "Execution",
    "Limits",
    "Outcome",
    "Session",
    "SessionManager",
    "SessionSpec",
    "Settings",
    "blocking",
]

_LOCATIONS = {
    "blocking": "engine.api",
    "Settings": "engine.config",
    "SessionManager": "engine.core.manager",
    "Session": "engine.core.session",
    "Execution": "engine.models",
    "Limits": "engine.models",
    "Outcome": "engine.models",
    "SessionSpec": "engine.models",
}


def __getattr__(name: str) -> Any:
    if name not in _LOCATIONS:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_LOCATIONS[name]), name)
