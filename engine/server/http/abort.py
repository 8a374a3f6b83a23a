"""Ending a response the way a vanished peer would: the connection is dropped mid-body, so the
client sees an incomplete response rather than a complete one that says something went wrong.

Some clients expect exactly that: E2B's SDKs, when a sandbox is killed under a running cell,
see the stream break, ask the control plane whether the sandbox still runs, and report that it
was killed. The server's protocol (`connections.py`) puts a callable under `ABORT` in each
request's `scope["extensions"]`; elsewhere (an in-process test transport) there is none.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any

ABORT = "lci.abort"


def abort(scope: MutableMapping[str, Any]) -> bool:
    """Drop the request's connection without completing its response; False if the server
    cannot (the caller then ends the response some other way)."""
    drop: Callable[[], None] | None = scope.get("extensions", {}).get(ABORT)
    if drop is None:
        return False
    drop()
    return True
