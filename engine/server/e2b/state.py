"""What the E2B surface keeps while the server runs: its sandboxes and the snapshots taken of them.
Attached to the shared state at startup; every sandbox is killed at shutdown."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from engine.server.e2b.registry import E2BSandboxes
from engine.server.e2b.snapshots import E2BSnapshots
from engine.server.runtime.state import ServerState


def sandboxes(shared: ServerState) -> E2BSandboxes:
    return shared.part(E2BSandboxes)


@asynccontextmanager
async def running(shared: ServerState) -> AsyncIterator[None]:
    registry = E2BSandboxes(shared.runner)
    shared.attach(registry)
    shared.attach(E2BSnapshots(registry))
    try:
        yield
    finally:
        await registry.aclose()
