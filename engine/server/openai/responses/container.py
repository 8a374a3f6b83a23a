"""The container of a Responses call with the code interpreter: a named one (which must be
running), the one `previous_response_id` left, a new one made now for `file_ids` or a
`memory_limit`, or else one started by the first code block — registered as a container either way,
so its files can be listed and downloaded through the Containers API."""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable

from engine.server.openai.containers.registry import ContainerRegistry
from engine.server.openai.files.store import FileStore
from engine.server.openai.responses.input import ToolSet
from engine.server.runtime.conversation import Conversation
from engine.server.runtime.state import ServerState


async def resolve(
    state: ServerState, tools: ToolSet, previous: str | None, response_id: str, owner: str
) -> str | None:
    """The container the call continues in, if any is set already (the caller checked that a
    named one belongs to `owner`; files and new containers are `owner`'s too)."""
    registry = state.part(ContainerRegistry)
    registry.check_files(tools.file_ids, f"{tools.container_param}.file_ids", owner)
    await registry.sweep()
    if tools.container is not None:
        named = registry.get(tools.container, "tools")
        session = registry.session(named, "tools")  # an expired container cannot run code
        session.last_used_at = time.time()  # in use from now: not to expire before the code runs
        registry.continued(named)
        return named.id
    if previous is not None:
        container = registry.get(previous)
        registry.continued(container)
        for file_id in tools.file_ids:
            record = state.part(FileStore).get(file_id, owner)
            data = await state.part(FileStore).read(file_id, owner)
            await registry.add_file(container, record.filename, data, source="user")
        return previous
    if tools.file_ids or tools.memory_limit:
        created = await registry.create(
            _name(response_id),
            memory_limit=tools.memory_limit,
            file_ids=tools.file_ids,
            owner=owner,
        )
        return created.id
    return None


def registering(
    state: ServerState, conversation: Conversation, response_id: str
) -> Callable[[], Awaitable[str]]:
    """`conversation.container_id`, recording the session as a container when it starts."""

    async def container() -> str:
        session_id = await conversation.container_id()
        # Implicit when the call named none (else `resolve` registered it already): reported with
        # the expiry that applies to it, the short one of `implicit_container_ttl_s`.
        minutes = math.ceil(state.options.implicit_container_ttl_s / 60)
        session = state.manager.get(session_id)
        state.part(ContainerRegistry).register(
            session, _name(response_id), minutes=minutes, implicit=True
        )
        return session_id

    return container


def _name(response_id: str) -> str:
    return f"Container for {response_id}"
