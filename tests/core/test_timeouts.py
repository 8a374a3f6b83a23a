"""The timeout ladder: interrupt keeps state; a cell that will not stop is killed, reported, and the
session keeps working. Whatever the cell does, it ends within about twice its timeout."""

from __future__ import annotations

import asyncio
import time

import pytest

from engine.core.session import Session
from engine.models import Outcome

TIMEOUT = 1.0
# The cell's timeout plus the 0.5 s grace, plus slack for restarting the interpreter on a busy machine.
DEADLINE = 2 * TIMEOUT + 3.0


async def timed(session: Session, code: str) -> tuple[float, object]:
    started = time.monotonic()
    result = await session.execute(code, timeout_s=TIMEOUT)
    return time.monotonic() - started, result


async def test_soft_interrupt_keeps_state(session: Session) -> None:
    await session.execute("kept = 'yes'")
    elapsed, result = await timed(session, "import time\nwhile True:\n    time.sleep(0.01)")
    assert result.outcome is Outcome.INTERRUPTED
    assert result.state_preserved
    assert result.error is not None and result.error.name == "KeyboardInterrupt"
    assert TIMEOUT <= elapsed < DEADLINE
    assert (await session.execute("kept")).result_text == "'yes'"


async def test_sleep_is_interrupted(session: Session) -> None:
    elapsed, result = await timed(session, "import time\ntime.sleep(100)")
    assert result.outcome is Outcome.INTERRUPTED and elapsed < DEADLINE


UNSTOPPABLE = {
    "swallows_keyboard_interrupt": (
        "import time\nwhile True:\n    try:\n        time.sleep(0.01)\n"
        "    except KeyboardInterrupt:\n        print('swallowed')"
    ),
    "ignores_sigint": "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True: pass",
    "blocks_in_c": "sum(range(10**12))",
    "stops_itself": "import os, signal\nos.kill(os.getpid(), signal.SIGSTOP)",
}


@pytest.mark.parametrize("code", UNSTOPPABLE.values(), ids=UNSTOPPABLE.keys())
async def test_unstoppable_cell_is_killed_and_session_recovers(make_session, code: str) -> None:  # type: ignore[no-untyped-def]
    # A large CPU allowance, so that only the ladder's own interrupt reaches the cell.
    session = await make_session(cpu_s=100)
    await session.execute("lost = 1")
    elapsed, result = await timed(session, code)
    assert result.outcome is Outcome.KILLED
    assert not result.state_preserved
    assert result.error is not None and "restarted" in result.error.value
    assert elapsed < DEADLINE
    after = await session.execute("'lost' in globals(), 2 + 2")
    assert after.result_text == "(False, 4)"


async def test_daemonized_grandchild_dies_with_the_sandbox(session: Session) -> None:
    daemon = (
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        while True:\n"
        "            with open('heartbeat', 'a') as f: f.write('.')\n"
        "            time.sleep(0.05)\n"
        "    os._exit(0)\n"
        "time.sleep(0.3)\n"
        "sum(range(10**12))\n"  # then hang, so the ladder kills the sandbox
    )
    result = await session.execute(daemon, timeout_s=TIMEOUT)
    assert result.outcome is Outcome.KILLED
    size = len(await session.read_file("heartbeat"))
    await asyncio.sleep(0.5)
    assert len(await session.read_file("heartbeat")) == size  # nothing is writing any more


async def test_thread_left_running_is_stopped_by_the_kill(session: Session) -> None:
    code = (
        "import threading, time\n"
        "def spin():\n"
        "    while True:\n"
        "        with open('ticks', 'a') as f: f.write('.')\n"
        "        time.sleep(0.05)\n"
        "threading.Thread(target=spin).start()\n"
        "sum(range(10**12))\n"
    )
    result = await session.execute(code, timeout_s=TIMEOUT)
    assert result.outcome is Outcome.KILLED
    size = len(await session.read_file("ticks"))
    await asyncio.sleep(0.4)
    assert len(await session.read_file("ticks")) == size


async def test_cancelling_execute_stops_the_cell(session: Session) -> None:
    await session.execute("state = 'kept'")
    task = asyncio.ensure_future(session.execute("import time\ntime.sleep(30)", timeout_s=60))
    await asyncio.sleep(0.3)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 3
    assert (await session.execute("state")).result_text == "'kept'"


async def test_cpu_time_limit_is_a_catchable_error(make_session) -> None:  # type: ignore[no-untyped-def]
    session = await make_session(cpu_s=1, timeout_s=10)
    result = await session.execute("while True: pass")
    assert result.outcome is Outcome.ERROR
    assert result.error is not None and result.error.name == "CPUTimeExceeded"
    # Named like a built-in in the traceback, without the agent's module path.
    assert result.error.traceback.rstrip().splitlines()[-1].startswith("CPUTimeExceeded: ")
    assert "lci_agent" not in result.error.traceback
    assert result.state_preserved
    assert (await session.execute("1")).result_text == "1"
