"""Snapshots, restore and fork of a live session, on both backends: every object and file comes
back exactly, forks diverge on their own, the output protocol holds after a handover, and the
limits hold (the snapshot cap, the memory limit, the disk limit, the owner's quota)."""

from __future__ import annotations

import asyncio
import os

import psutil
import pytest

from engine.core.manager import SessionManager
from engine.core.session import Session
from engine.errors import CapacityExceeded, SessionBusy, SnapshotNotFound, SnapshotsUnavailable
from engine.models import BackendName, Outcome, SessionSpec

STATE = (
    "x = 1\n"
    "log = open('log.txt', 'w'); log.write('one'); log.flush()\n"
    "numbers = (i for i in range(100)); next(numbers)\n"
    "double = lambda v: v * 2\n"
    "class Point:\n"
    "    def __init__(self, x): self.x = x\n"
    "p = Point(3)\n"
)
CHANGE = (
    "x = 2; next(numbers); next(numbers); p.x = 9\n"
    "log.write('two'); log.flush()\n"
    "open('new.txt', 'w').write('new')\n"
)
READ = (
    "import os\n"
    "(x, next(numbers), double(21), p.x, log.closed, open('log.txt').read(),"
    " sorted(n for n in os.listdir('.') if not n.startswith('.')))"
)


def processes_of(uid: int) -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["uids"]) if p.info["uids"].real == uid]


async def value(session: Session, code: str) -> str:
    result = await session.execute(code)
    assert result.outcome is Outcome.COMPLETED, result
    return result.result_text or ""


async def test_restore_brings_back_every_object_and_the_files(session: Session) -> None:
    await value(session, STATE)
    snapshot = await session.snapshot()
    assert snapshot.files == 1 and snapshot.disk_bytes == 3 and snapshot.executions == 1
    await value(session, CHANGE)
    assert await value(session, READ) == "(2, 3, 42, 9, False, 'onetwo', ['log.txt', 'new.txt'])"

    await session.restore(snapshot.id)
    # The open file, the generator, the lambda and the instance are the objects of the snapshot.
    assert await value(session, READ) == "(1, 1, 42, 3, False, 'one', ['log.txt'])"
    # The snapshot stays: restoring it again gives its state again.
    await session.restore(snapshot.id)
    assert await value(session, "(x, next(numbers))") == "(1, 1)"
    assert [s.id for s in await session.list_snapshots()] == [snapshot.id]


async def test_restoring_an_older_snapshot_keeps_the_newer_ones(session: Session) -> None:
    await value(session, "x = 'first'")
    first = await session.snapshot()
    await value(session, "x = 'second'")
    second = await session.snapshot()
    await value(session, "x = 'third'")
    await session.restore(first.id)
    assert await value(session, "x") == "'first'"
    await session.restore(second.id)  # taken after the state the kernel now comes from
    assert await value(session, "x") == "'second'"
    await session.delete_snapshot(first.id)
    with pytest.raises(SnapshotNotFound):
        await session.restore(first.id)
    assert [s.id for s in await session.list_snapshots()] == [second.id]


async def test_output_interrupts_and_crashes_work_after_a_restore(session: Session) -> None:
    await value(session, "import sys, time\ncount = 0")
    snapshot = await session.snapshot()
    await session.restore(snapshot.id)
    result = await session.execute(
        "print('out'); print('err', file=sys.stderr); display({'a': 1}); count += 1; count"
    )
    assert (result.stdout, result.stderr, result.result_text) == ("out\n", "err\n", "1")
    assert result.outputs and any(o.type == "display" for o in result.outputs)
    # The relay follows the new kernel: an interrupt reaches it and the state is kept ...
    result = await session.execute("time.sleep(30)", timeout_s=0.5)
    assert result.outcome is Outcome.INTERRUPTED and result.state_preserved, result
    assert await value(session, "count") == "1"
    # ... and output printed before it dies is still kept, the death told as a crash.
    result = await session.execute(
        "print('last', flush=True)\nprint('on stderr', file=sys.stderr, flush=True)\n"
        "import os\nos._exit(3)"
    )
    assert result.outcome is Outcome.CRASHED, result
    assert (result.stdout, result.stderr) == ("last\n", "on stderr\n"), result
    assert not result.state_preserved
    # A fresh interpreter has no snapshots: they lived in the one that crashed.
    assert await session.list_snapshots() == []
    with pytest.raises(SnapshotNotFound):
        await session.restore(snapshot.id)


async def test_handovers_in_quick_succession_keep_the_session(session: Session) -> None:
    # Each restore ends one kernel; the relay may see several of those exits at once.
    await value(session, "n = 0")
    for round_number in range(12):
        snapshot = await session.snapshot()
        await value(session, "n += 100")
        await session.restore(snapshot.id)
        await session.delete_snapshot(snapshot.id)
        assert await value(session, "n += 1; n") == str(round_number + 1)


async def test_a_snapshot_request_while_a_cell_runs_is_busy(session: Session) -> None:
    running = asyncio.create_task(session.execute("import time; time.sleep(1)"))
    await asyncio.sleep(0.3)
    with pytest.raises(SessionBusy):
        await session.snapshot()
    assert (await running).outcome is Outcome.COMPLETED


async def test_forks_diverge_from_their_parent_and_each_other(
    manager: SessionManager, session: Session
) -> None:
    await value(session, STATE)
    snapshot = await session.snapshot()
    await value(session, "x = 'parent now'")
    forks = await manager.fork(session.id, n=2, snapshot_id=snapshot.id)
    assert len(forks) == 2 and forks[0].session.id != forks[1].session.id
    for fork in forks:
        assert {"x", "p", "Point", "double"} <= set(fork.kept)
        # What is tied to the parent's sandbox is named, with why.
        assert set(fork.not_kept) == {"log", "numbers"}
        assert "generator" in fork.not_kept["numbers"]
    one, two = (manager.get(f.session.id) for f in forks)
    assert await value(one, "(x, double(2), p.x, open('log.txt').read())") == "(1, 4, 3, 'one')"
    await value(one, "x = 'one'; open('log.txt', 'w').write('fork one')")
    assert await value(two, "(x, open('log.txt').read())") == "(1, 'one')"
    assert await value(session, "x") == "'parent now'"
    # Each fork is a session of its own: closing the parent leaves them running.
    await manager.close(session.id)
    assert await value(one, "x") == "'one'"


async def test_the_snapshot_cap_holds_and_deleting_frees_a_place(
    manager: SessionManager, session: Session
) -> None:
    session.max_snapshots = 2
    first = await session.snapshot()
    await session.snapshot()
    with pytest.raises(CapacityExceeded):
        await session.snapshot()
    await session.delete_snapshot(first.id)
    await session.snapshot()


async def test_forks_count_against_the_owners_quota(manager: SessionManager, backend) -> None:  # type: ignore[no-untyped-def]
    manager.settings.max_sessions_per_owner = 3
    manager.capacity.settings.max_sessions_per_owner = 3
    spec = SessionSpec(backend=backend, limits=manager.settings.limits)
    parent = await manager.create(spec, owner="key-a")
    await value(parent, "x = 1")
    with pytest.raises(CapacityExceeded):
        await manager.fork(parent.id, n=3, owner="key-a")  # a fork bomb of forks
    assert [s.id for s in manager.list()] == [parent.id]  # none half-made is left
    forks = await manager.fork(parent.id, n=2, owner="key-a")
    assert len(forks) == 2 and manager.count() == 3


async def test_a_workdir_copy_past_the_disk_limit_is_refused(session: Session) -> None:
    # 20 MB in a 32 MB workdir: its copy does not fit.
    await value(session, "open('big.bin', 'wb').write(b'x' * (20 << 20))")
    with pytest.raises(SnapshotsUnavailable, match="no space left"):
        await session.snapshot()
    assert await value(session, "import os; os.path.getsize('big.bin')") == str(20 << 20)
    assert [f.path for f in await session.list_files()] == ["big.bin"]
    assert await session.list_snapshots() == []


async def test_snapshot_copies_are_not_the_users_files(session: Session) -> None:
    await session.write_file("data.csv", b"a,b\n1,2\n")
    await session.snapshot()
    assert [f.path for f in await session.list_files()] == ["data.csv"]


async def test_memory_a_snapshot_holds_counts_against_the_session(make_session) -> None:  # type: ignore[no-untyped-def]
    session = await make_session(memory_mb=256)
    touch = "for i in range(0, len(a), 4096): a[i] = (a[i] + 1) % 256"
    await value(session, "a = bytearray(90 << 20)\n" + touch)
    first = await session.snapshot()
    shared = (await session.list_snapshots())[0].memory_bytes
    assert shared is not None and shared < 30 << 20, shared  # copy-on-write: nearly all shared
    await value(session, touch)  # the kernel's pages are its own again: 90 MB more
    # The snapshot holds the pages as they were: 90 MB of its own now.
    measured = (await session.list_snapshots())[0].memory_bytes
    assert measured is not None and measured > 80 << 20, measured
    await session.snapshot()
    result = await session.execute(touch)  # a third copy: past the session's 256 MB
    assert result.outcome in (Outcome.CRASHED, Outcome.KILLED), result
    assert await session.list_snapshots() == []
    with pytest.raises(SnapshotNotFound):
        await session.restore(first.id)


async def test_closing_the_session_ends_every_snapshot(manager: SessionManager) -> None:
    session = await manager.create(
        SessionSpec(backend=BackendName.SUBPROCESS, limits=manager.settings.limits)
    )
    # A subprocess sandbox runs as a uid of its own (as root): the host counts its processes.
    uid = int(await value(session, "import os\nos.getuid()"))
    if uid == os.getuid():
        pytest.skip("sandboxes share the engine's uid here (not root): nothing to count")
    before = len(processes_of(uid))
    for _ in range(3):
        await session.snapshot()
    assert len(processes_of(uid)) == before + 3  # each snapshot is one frozen process
    await manager.close(session.id)
    assert processes_of(uid) == []
