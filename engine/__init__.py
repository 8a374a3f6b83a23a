"""lci: a local code interpreter for any LLM.

    from engine import SessionManager, blocking
    with blocking(SessionManager()) as manager:
        print(manager.create().execute("6 * 7").result_text)

Names are imported lazily, so `import engine` stays cheap and never imports the docker SDK.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.api import BlockingManager, BlockingSession, blocking
    from engine.client import AsyncClient, AsyncRemoteSession, Client, RemoteSession
    from engine.config import Settings
    from engine.core.manager import SessionManager
    from engine.core.session import Session
    from engine.errors import (
        BackendUnavailable,
        BadParameter,
        CapacityExceeded,
        FileAccessError,
        FileNotFound,
        ImageNotFound,
        InvalidRequest,
        LCIError,
        NotFound,
        PayloadTooLarge,
        SandboxError,
        SandboxStartError,
        SessionBusy,
        SessionClosed,
        SessionNotFound,
        SnapshotNotFound,
        Unauthorized,
        UpstreamError,
    )
    from engine.models import (
        DisplayOutput,
        ErrorInfo,
        Execution,
        FileInfo,
        ForkResult,
        Limits,
        Outcome,
        ResultOutput,
        SessionInfo,
        SessionSpec,
        SnapshotInfo,
        StreamOutput,
    )

_LOCATIONS = {
    "blocking": "engine.api",
    "BlockingManager": "engine.api",
    "BlockingSession": "engine.api",
    "Settings": "engine.config",
    "SessionManager": "engine.core.manager",
    "Session": "engine.core.session",
    **dict.fromkeys(
        ["AsyncClient", "AsyncRemoteSession", "Client", "RemoteSession"], "engine.client"
    ),
    **dict.fromkeys(
        [
            "BackendUnavailable",
            "BadParameter",
            "CapacityExceeded",
            "FileAccessError",
            "FileNotFound",
            "ImageNotFound",
            "InvalidRequest",
            "LCIError",
            "NotFound",
            "PayloadTooLarge",
            "SandboxError",
            "SandboxStartError",
            "SessionBusy",
            "SessionClosed",
            "SessionNotFound",
            "SnapshotNotFound",
            "Unauthorized",
            "UpstreamError",
        ],
        "engine.errors",
    ),
    **dict.fromkeys(
        [
            "DisplayOutput",
            "ErrorInfo",
            "Execution",
            "FileInfo",
            "ForkResult",
            "Limits",
            "Outcome",
            "ResultOutput",
            "SessionInfo",
            "SessionSpec",
            "SnapshotInfo",
            "StreamOutput",
        ],
        "engine.models",
    ),
}
__all__ = [
    "AsyncClient",
    "AsyncRemoteSession",
    "BackendUnavailable",
    "BadParameter",
    "BlockingManager",
    "BlockingSession",
    "CapacityExceeded",
    "Client",
    "DisplayOutput",
    "ErrorInfo",
    "Execution",
    "FileAccessError",
    "FileInfo",
    "FileNotFound",
    "ForkResult",
    "ImageNotFound",
    "InvalidRequest",
    "LCIError",
    "Limits",
    "NotFound",
    "Outcome",
    "PayloadTooLarge",
    "RemoteSession",
    "ResultOutput",
    "SandboxError",
    "SandboxStartError",
    "Session",
    "SessionBusy",
    "SessionClosed",
    "SessionInfo",
    "SessionManager",
    "SessionNotFound",
    "SessionSpec",
    "Settings",
    "SnapshotInfo",
    "SnapshotNotFound",
    "StreamOutput",
    "Unauthorized",
    "UpstreamError",
    "blocking",
]  # the same names as _LOCATIONS (checked by a test)


def __getattr__(name: str) -> Any:
    if name not in _LOCATIONS:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_LOCATIONS[name]), name)
