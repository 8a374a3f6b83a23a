"""Session files through the API, concurrency between sessions, and the manager's bookkeeping."""

from __future__ import annotations

import asyncio
import time

import pytest

from engine.core.manager import SessionManager
from engine.core.session import Session
from engine.errors import (
    CapacityExceeded,
    FileAccessError,
    FileNotFound,
    SessionBusy,
    SessionClosed,
    SessionNotFound,
)
from engine.models import Outcome, SessionState


async def test_upload_read_in_cell_and_download(session: Session) -> None:
    await session.write_file("data/input.csv", b"a,b\n1,2\n")
    result = await session.execute(
        "import csv\nrows = list(csv.reader(open('data/input.csv')))\n"
        "open('out.txt', 'w').write(str(len(rows)))\nrows[1]"
    )
    assert result.result_text == "['1', '2']"
    assert await session.read_file("out.txt") == b"2"
    assert await session.read_file(f"{session.info().workdir}/out.txt") == b"2"
    listed = {f.path: f.size for f in await session.list_files()}
    assert listed["data/input.csv"] == 8 and listed["out.txt"] == 1


@pytest.mark.parametrize("path", ["../escape", "/etc/passwd", "a/../../b", "", "nul\x00byte"])
async def test_paths_outside_the_workdir_are_refused(session: Session, path: str) -> None:
    with pytest.raises(FileAccessError):
        await session.read_file(path)
    with pytest.raises(FileAccessError):
        await session.write_file(path, b"x")


async def test_symlinks_and_special_files_made_by_user_code_are_not_followed(
    session: Session,
) -> None:
    await session.execute(
        "import os\nos.symlink('/etc/passwd', 'link')\nos.mkfifo('pipe')\nos.symlink('/', 'rootlink')"
    )
    for path in ("link", "pipe", "rootlink/etc/passwd"):
        with pytest.raises(FileAccessError):
            await session.read_file(path)
    with pytest.raises(FileAccessError):
        await session.write_file("link", b"overwrite through the link")
    assert {f.path for f in await session.list_files()} == set()


async def test_missing_file_and_size_cap(session: Session) -> None:
    with pytest.raises(FileNotFound):
        await session.read_file("nope.txt")
    await session.execute("open('big.bin', 'wb').write(b'x' * 5000)")
    with pytest.raises(FileAccessError, match="larger"):
        await session.read_file("big.bin", max_bytes=1000)


async def test_files_survive_a_restart(session: Session) -> None:
    await session.write_file("keep.txt", b"still here")
    result = await session.execute("import os\nos._exit(1)")
    assert result.outcome is Outcome.CRASHED
    after = await session.execute("open('keep.txt').read()")
    # The workdir lives on the host (a tmpfs there when root), not in the sandbox it outlives.
    assert after.result_text == "'still here'"


async def test_sessions_run_concurrently_and_are_isolated(make_session) -> None:  # type: ignore[no-untyped-def]
    sessions = await asyncio.gather(*(make_session() for _ in range(3)))
    await asyncio.gather(*(s.execute(f"mine = {i}") for i, s in enumerate(sessions)))
    started = time.monotonic()
    results = await asyncio.gather(
        *(s.execute("import time\ntime.sleep(1)\nmine") for s in sessions)
    )
    assert time.monotonic() - started < 2.5  # in parallel, not one after another
    assert [r.result_text for r in results] == ["0", "1", "2"]
    peek = await sessions[0].execute("'mine' in globals(), len(__import__('os').listdir('.'))")
    assert peek.result_text == "(True, 0)"


async def test_second_execution_is_refused_or_queued(session: Session) -> None:
    first = asyncio.ensure_future(session.execute("import time\ntime.sleep(0.5)\n1"))
    await asyncio.sleep(0.1)
    assert session.info().state is SessionState.BUSY
    with pytest.raises(SessionBusy):
        await session.execute("2")
    queued = await session.execute("3", wait=True)
    assert (await first).result_text == "1" and queued.result_text == "3"
    assert session.info().state is SessionState.IDLE


async def test_manager_registry_capacity_and_close(manager: SessionManager, make_session) -> None:  # type: ignore[no-untyped-def]
    manager.settings.max_sessions = 2
    first = await make_session()
    await make_session()
    with pytest.raises(CapacityExceeded):
        await make_session()
    assert manager.get(first.id) is first
    assert {s.id for s in manager.list()} >= {first.id}
    await manager.close(first.id)
    with pytest.raises(SessionNotFound):
        manager.get(first.id)
    with pytest.raises(SessionClosed):
        await first.execute("1")
    await make_session()  # capacity freed


async def test_idle_sessions_expire(manager: SessionManager, make_session) -> None:  # type: ignore[no-untyped-def]
    manager.settings.idle_timeout_s = 0.3
    session = await make_session()
    busy = await make_session()
    running = asyncio.ensure_future(busy.execute("import time\ntime.sleep(1)"))
    await asyncio.sleep(0.8)  # the background expiry checks every idle_timeout/4
    assert manager.get(busy.id) is busy  # a busy session is never expired
    await running
    assert session.info().state is SessionState.CLOSED
    with pytest.raises(SessionNotFound):
        manager.get(session.id)


async def test_upload_beyond_the_disk_limit_is_a_clear_error(session: Session) -> None:
    size = (session.limits.disk_mb + 1) << 20
    with pytest.raises(FileAccessError, match=r"too-big\.bin"):
        await session.write_file("too-big.bin", b"x" * size)
    await session.write_file("small.txt", b"still works")
    assert (await session.execute("open('small.txt').read()")).result_text == "'still works'"
