"""What the OpenAI surface keeps while the server runs: stored responses, uploaded files, and the
containers over lci sessions. Each is attached to the shared state at startup (its routes read it
back with `state.part(...)`); the containers are closed at shutdown."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from engine.server.openai.containers.registry import ContainerRegistry
from engine.server.openai.files.store import FileStore
from engine.server.openai.responses.store import ResponseStore
from engine.server.runtime.state import ServerState

FILES_DIR = "files"  # under the state directory: the uploaded files


@asynccontextmanager
async def running(shared: ServerState) -> AsyncIterator[None]:
    options = shared.options
    files = FileStore(
        shared.settings.state_dir / FILES_DIR,
        max_file_bytes=options.max_upload_bytes,
        max_total_bytes=options.max_file_store_bytes,
        keys=shared.keys,
    )
    registry = ContainerRegistry(shared.manager, shared.runner, files, shared.settings)
    shared.attach(files)
    shared.attach(ResponseStore(options.stored_responses))
    shared.attach(registry)
    try:
        yield
    finally:
        await registry.aclose()
