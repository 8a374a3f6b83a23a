"""What the OpenAI surface keeps while the server runs: stored responses, uploaded files, and the
containers over lci sessions. Attached to the shared state at startup, closed at shutdown."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from engine.server.openai.containers.registry import ContainerRegistry
from engine.server.openai.files.store import FileStore
from engine.server.openai.responses.store import ResponseStore
from engine.server.runtime.state import ServerState


@dataclass
class OpenAIState:
    store: ResponseStore
    files: FileStore
    registry: ContainerRegistry

    @classmethod
    def build(cls, shared: ServerState) -> OpenAIState:
        options = shared.options
        files = FileStore(
            shared.settings.state_dir / "files",
            max_file_bytes=options.max_upload_bytes,
            max_total_bytes=options.max_file_store_bytes,
        )
        return cls(
            store=ResponseStore(options.stored_responses),
            files=files,
            registry=ContainerRegistry(shared.manager, shared.runner, files, shared.settings),
        )


def openai_state(shared: ServerState) -> OpenAIState:
    return shared.part(OpenAIState)


@asynccontextmanager
async def running(shared: ServerState) -> AsyncIterator[None]:
    state = OpenAIState.build(shared)
    shared.attach(state)
    try:
        yield
    finally:
        await state.registry.aclose()
