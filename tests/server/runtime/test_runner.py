"""`Containers`, the server's CodeRunner, over a real SessionManager (no HTTP)."""

from __future__ import annotations

from engine.core.manager import SessionManager
from engine.server.runtime.runner import ServerRunner


async def test_a_replacement_made_before_the_code_runs_is_reported(
    manager: SessionManager,
) -> None:
    """The Responses surface asks for the session to name the container before the code runs: a
    lost session replaced then must still make that execution report the state as lost."""
    containers = ServerRunner(manager)
    assert (await containers.execute("a", "x = 1")).state_preserved
    lost = containers.session_id("a")
    assert lost is not None
    await manager.close(lost)  # as idle expiry would
    announced = await containers.session("a")
    assert announced.id != lost
    again = await containers.execute("a", "'x' in globals()")
    assert again.result_text == "False" and not again.state_preserved
    assert (await containers.execute("a", "1")).state_preserved  # told once
    await containers.release("a", close=True)


async def test_release_forgets_a_replacement(manager: SessionManager) -> None:
    containers = ServerRunner(manager)
    await containers.execute("a", "x = 1")
    lost = containers.session_id("a")
    assert lost is not None
    await manager.close(lost)
    await containers.session("a")
    await containers.release("a", close=True)
    assert (await containers.execute("a", "1")).state_preserved  # a new conversation
    await containers.release("a", close=True)
    assert manager.list() == []
