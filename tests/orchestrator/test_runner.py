"""SessionRunner: the CodeRunner over the core's SessionManager."""

from __future__ import annotations

from engine.core.manager import SessionManager
from engine.session_runner import SessionRunner


async def test_one_session_per_conversation(manager: SessionManager) -> None:
    runner = SessionRunner(manager)
    await runner.execute("a", "x = 1")
    await runner.execute("b", "x = 2")
    assert (await runner.execute("a", "x")).result_text == "1"
    assert (await runner.execute("b", "x")).result_text == "2"
    assert len(manager.list()) == 2
    await runner.aclose()
    assert manager.list() == []


async def test_lost_session_is_replaced_and_reported(manager: SessionManager) -> None:
    runner = SessionRunner(manager)
    first = await runner.execute("a", "x = 1")
    assert first.state_preserved
    session_id = runner.session_id("a")
    assert session_id is not None
    await manager.close(session_id)  # as idle expiry would
    again = await runner.execute("a", "'x' in globals()")
    assert again.result_text == "False" and not again.state_preserved
    assert runner.session_id("a") != session_id
    assert (await runner.execute("a", "1")).state_preserved
    await runner.aclose()


def test_orchestrator_never_imports_the_core() -> None:
    import subprocess
    import sys

    code = (
        "import sys, engine.orchestrator, engine.orchestrator.loop; "
        "print(sorted(m for m in sys.modules if m.startswith(('engine.core', 'docker'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
