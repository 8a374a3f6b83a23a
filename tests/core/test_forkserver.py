"""The fork server: sessions forked from a zygote that imported modules once; fresh random state per
session; and a dead zygote costs only speed (sessions start cold)."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from engine.config import Settings
from engine.core.manager import SessionManager
from engine.core.subprocess_backend import SubprocessBackend
from engine.models import BackendName, SessionSpec


@pytest.fixture
def fork_settings(settings: Settings) -> Settings:
    settings.forkserver = True
    settings.preload = ["numpy", "json", "no_such_module_here"]
    return settings


async def ready_backend(manager: SessionManager) -> SubprocessBackend:
    backend = await manager.backend(BackendName.SUBPROCESS)
    assert isinstance(backend, SubprocessBackend)
    assert await backend.wait_forkserver(60)
    return backend


async def test_sessions_start_with_preloaded_modules(fork_settings: Settings) -> None:
    pytest.importorskip("numpy")
    async with SessionManager(fork_settings) as manager:
        backend = await ready_backend(manager)
        assert backend.forkserver is not None
        info = backend.forkserver.info
        assert info["preloaded"] == ["numpy", "json"]
        assert "no_such_module_here" in info["failed"]
        assert info["threads"] == 1
        session = await manager.create(SessionSpec())
        result = await session.execute("json")
        assert result.error is not None and result.error.name == "NameError"  # a clean namespace
        result = await session.execute("import sys\n'numpy' in sys.modules")
        assert result.result_text == "True"


async def test_each_session_draws_its_own_random_numbers(fork_settings: Settings) -> None:
    pytest.importorskip("numpy")
    async with SessionManager(fork_settings) as manager:
        await ready_backend(manager)
        code = "import random, numpy\n(random.random(), float(numpy.random.rand()))"
        draws = set()
        for _ in range(3):
            session = await manager.create(SessionSpec())
            draws.add((await session.execute(code)).result_text)
        assert len(draws) == 3


async def test_a_dead_fork_server_only_costs_speed(fork_settings: Settings) -> None:
    async with SessionManager(fork_settings) as manager:
        backend = await ready_backend(manager)
        session = await manager.create(SessionSpec())
        await session.execute("kept = 1")
        assert backend.forkserver is not None and backend.forkserver._process is not None
        sandbox = session._sandbox
        assert sandbox is not None
        os.kill(backend.forkserver._process.pid, signal.SIGKILL)
        # Its sandboxes are its children and die with it (their state is lost, as in any crash);
        # the session restarts cold and new sessions start cold.
        await asyncio.wait_for(sandbox.wait(), 10)
        assert (await session.execute("'kept' in globals(), 1 + 1")).result_text == "(False, 2)"
        assert session.info().restarts == 1
        fresh = await manager.create(SessionSpec())
        assert (await fresh.execute("2 + 2")).result_text == "4"
        assert not backend.forkserver.ready


async def test_warm_pool_hands_out_started_sandboxes(settings: Settings) -> None:
    settings.subprocess_warm_pool = 2
    async with SessionManager(settings) as manager:
        backend = await manager.backend(BackendName.SUBPROCESS)
        assert isinstance(backend, SubprocessBackend) and backend.pool is not None
        assert await backend.warm_up(60)
        pooled = {id(slot.sandbox) for slot in backend.pool._ready}
        first = await manager.create()  # the engine's default limits, as the pool has
        assert id(first._sandbox) in pooled
        second = await manager.create(
            SessionSpec(limits=settings.limits.model_copy(update={"memory_mb": 300}))
        )  # other limits than the pool's: started fresh
        assert id(second._sandbox) not in pooled
        await first.execute("x = 1")
        assert (await second.execute("x = 2\nx")).result_text == "2"
        assert (await first.execute("x")).result_text == "1"
        assert first.info().limits == settings.limits
        assert second.info().limits.memory_mb == 300
        assert await backend.pool.wait_full(60)
