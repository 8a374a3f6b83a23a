"""`ContainerRegistry` over a real SessionManager (no HTTP): expiry anchored on the last activity,
memory tiers, files copied in and written by code, and the core's file deletion it relies on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from engine.core.manager import SessionManager
from engine.errors import (
    BadParameter,
    ContainerExpired,
    ContainerNotFound,
    FileAccessError,
    FileNotFound,
)
from engine.server.openai.containers.registry import ContainerRegistry
from engine.server.openai.files.store import FileStore
from engine.server.runtime.runner import ServerRunner


@pytest.fixture
async def registry(manager: SessionManager, tmp_path: Path) -> AsyncIterator[ContainerRegistry]:
    files = FileStore(tmp_path / "files", max_file_bytes=1 << 20, max_total_bytes=1 << 21)
    registry = ContainerRegistry(manager, ServerRunner(manager), files, manager.settings)
    yield registry
    await registry.aclose()


async def test_expiry_is_anchored_on_the_last_activity(
    registry: ContainerRegistry, manager: SessionManager
) -> None:
    container = await registry.create("c", minutes=1)
    session = manager.get(container.id)
    session.last_used_at -= 50  # idle for 50 s of its minute
    assert await registry.sweep() == 0
    await registry.add_file(container, "a.txt", b"a")  # activity: the minute starts again
    session.last_used_at -= 50
    assert await registry.sweep() == 0
    session.last_used_at -= 20  # now 70 s idle
    assert await registry.sweep() == 1
    assert registry.get(container.id).status == "expired"
    assert [s.id for s in manager.list()] == []
    with pytest.raises(ContainerExpired):
        await registry.files(container)
    await registry.delete(container.id)
    with pytest.raises(ContainerNotFound):
        registry.get(container.id)


async def test_a_running_execution_is_never_expired(
    registry: ContainerRegistry, manager: SessionManager
) -> None:
    container = await registry.create("busy", minutes=1)
    session = manager.get(container.id)
    running = asyncio.ensure_future(session.execute("import time; time.sleep(1.5)"))
    await asyncio.sleep(0.5)
    session.last_used_at -= 120
    assert await registry.sweep() == 0
    assert (await running).outcome == "completed"
    assert await registry.sweep() == 0  # the execution just ended: active again


async def test_memory_tiers_and_copied_files(
    registry: ContainerRegistry, manager: SessionManager
) -> None:
    stored = await registry.file_store.put("in.txt", "user_data", b"data")
    # A tier above the operator's maximum is refused, naming the limit; below it, it is granted.
    with pytest.raises(BadParameter, match="memory_mb 16384 exceeds"):
        await registry.create("m", memory_limit="16g")
    maxima = manager.settings.max_limits
    manager.settings.max_limits = maxima.model_copy(update={"memory_mb": 65536})
    container = await registry.create("m", memory_limit="16g", file_ids=[stored.id])
    assert manager.get(container.id).limits.memory_mb == 16384
    (copied,) = await registry.files(container)
    assert (copied.path, copied.source, copied.bytes) == ("in.txt", "user", 4)
    with pytest.raises(FileNotFound) as caught:
        await registry.create("m", file_ids=["file-missing"])
    assert caught.value.param == "file_ids[0]"
    assert [s.id for s in manager.list()] == [container.id]  # nothing started for the bad one


async def test_files_follow_the_working_directory(
    registry: ContainerRegistry, manager: SessionManager
) -> None:
    container = await registry.create("f")
    session = manager.get(container.id)
    await session.execute("import os; os.mkdir('d'); open('d/x.txt', 'w').write('x')")
    (written,) = await registry.files(container)
    assert (written.path, written.source) == ("d/x.txt", "assistant")
    assert (await registry.file(container, written.id)).id == written.id  # stable id
    await registry.delete_file(container, written)
    assert await registry.files(container) == []
    await session.execute("import os; os.symlink('/etc/passwd', 'link'); os.mkdir('dir')")
    with pytest.raises(FileAccessError):
        await session.delete_file("link")  # a symlink is refused, never followed
    with pytest.raises(FileAccessError):
        await session.delete_file("dir")
    with pytest.raises(FileNotFound):
        await session.delete_file("missing.txt")
    with pytest.raises(FileAccessError):
        await session.delete_file("../outside")
