"""The session's state machine and timeout ladder, driven through the scripted fake sandbox."""

from __future__ import annotations

import asyncio

import pytest

from engine.core.sandbox import Sandbox
from engine.core.session import Session
from engine.errors import SessionBusy, SessionClosed
from engine.models import BackendName, Limits, Outcome, SessionState
from tests.fake_sandbox import FakeHost, FakeSandbox


@pytest.fixture
async def fake() -> tuple[Session, FakeHost]:
    host = FakeHost()
    session = Session("s1", BackendName.SUBPROCESS, host, Limits(timeout_s=0.2), 0.1)
    await session.start()
    return session, host


async def test_completed_cell(fake: tuple[Session, FakeHost]) -> None:
    session, _ = fake
    result = await session.execute("x")
    assert (result.outcome, result.result_text, result.state_preserved) == (
        Outcome.COMPLETED,
        "x",
        True,
    )
    assert session.state is SessionState.IDLE


async def test_interrupt_then_done_is_interrupted(fake: tuple[Session, FakeHost]) -> None:
    session, host = fake
    result = await session.execute("hang")
    assert result.outcome is Outcome.INTERRUPTED and result.state_preserved
    assert host.spawned[0].interrupts == 1 and len(host.spawned) == 1


async def test_ignored_interrupt_is_killed_and_replaced(fake: tuple[Session, FakeHost]) -> None:
    session, host = fake
    result = await session.execute("hang-hard")
    assert result.outcome is Outcome.KILLED and not result.state_preserved
    assert len(host.spawned) == 2 and not host.spawned[0].alive and host.spawned[1].alive
    assert session.info().restarts == 1
    assert (await session.execute("ok")).outcome is Outcome.COMPLETED


async def test_crash_is_reported_and_replaced(fake: tuple[Session, FakeHost]) -> None:
    session, host = fake
    result = await session.execute("crash")
    assert result.outcome is Outcome.CRASHED
    assert result.error is not None and "status 3" in result.error.value
    assert len(host.spawned) == 2


async def test_stdout_is_routed_to_the_running_execution(fake: tuple[Session, FakeHost]) -> None:
    session, _ = fake
    assert (await session.execute("print:hello")).stdout == "hello"


async def test_busy_and_closed(fake: tuple[Session, FakeHost]) -> None:
    session, _ = fake
    running = asyncio.ensure_future(session.execute("hang"))
    await asyncio.sleep(0.01)
    with pytest.raises(SessionBusy):
        await session.execute("x")
    await running
    await session.close()
    assert session.state is SessionState.CLOSED
    with pytest.raises(SessionClosed):
        await session.execute("x")


async def test_cancel_runs_the_ladder(fake: tuple[Session, FakeHost]) -> None:
    session, host = fake
    running = asyncio.ensure_future(session.execute("hang-hard", timeout_s=30))
    await asyncio.sleep(0.01)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert host.spawned[0].interrupts == 1 and len(host.spawned) == 2
    assert (await session.execute("x")).outcome is Outcome.COMPLETED


class _LateSweep(FakeSandbox):
    """Its death is reported at once, the sweep of what it left ends later (as a cgroup's)."""

    swept = False

    async def _terminate(self) -> None:
        await super()._terminate()
        await asyncio.sleep(0.2)
        self.swept = True


class _SweepWatchingHost(FakeHost):
    def __init__(self) -> None:
        super().__init__(_LateSweep)
        self.unswept_at_spawn: list[int] = []

    async def spawn(self) -> Sandbox:
        self.unswept_at_spawn.append(sum(not s.swept for s in self.spawned))
        return await super().spawn()


async def test_a_replacement_starts_after_the_sweep_of_the_sandbox_it_replaces() -> None:
    # A protocol violation starts the kill itself; the session's kill waits for that one.
    host = _SweepWatchingHost()
    session = Session("s1", BackendName.SUBPROCESS, host, Limits(timeout_s=5), 0.1)
    await session.start()
    result = await session.execute("junk")
    assert result.outcome is Outcome.CRASHED and result.error is not None
    assert "protocol" in result.error.value
    assert host.unswept_at_spawn == [0, 0] and len(host.spawned) == 2
    assert (await session.execute("x")).outcome is Outcome.COMPLETED
