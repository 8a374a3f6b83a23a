"""The fork server: sessions forked from a zygote that imported modules once; fresh random state per
session; and a dead zygote costs only speed (sessions start cold until it is started again)."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from engine.config import Settings
from engine.core.backends.subprocess.backend import SubprocessBackend
from engine.core.manager import SessionManager
from engine.errors import SandboxStartError
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
        backend = await ready_backend(manager)
        assert await backend.warm_up(60)  # staged sandboxes are seeded before they wait, too
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
        dead = backend.forkserver._process.pid
        os.kill(dead, signal.SIGKILL)
        # Its sandboxes are its children and die with it (their state is lost, as in any crash,
        # and the next execution says so); the session restarts cold and new sessions start
        # cold until the fork server is back.
        await asyncio.wait_for(sandbox.wait(), 10)
        restarted = await session.execute("'kept' in globals(), 1 + 1")
        assert restarted.result_text == "(False, 2)"
        assert not restarted.state_preserved
        assert session.info().restarts == 1
        fresh = await manager.create(SessionSpec())
        assert (await fresh.execute("2 + 2")).result_text == "4"
        # The engine starts the fork server again by itself.
        assert await backend.wait_forkserver(60)
        assert backend.forkserver.ready and backend.forkserver._process is not None
        assert backend.forkserver._process.pid != dead
        # A CPU quota keeps the pool (staged while the zygote was down) out of it.
        limits = manager.settings.limits.model_copy(update={"cpus": 1.0})
        forked = await manager.create(SessionSpec(limits=limits))
        assert (await forked.execute("import sys\n'numpy' in sys.modules")).result_text == "True"


async def pooled_backend(manager: SessionManager) -> tuple[SubprocessBackend, set[int]]:
    """The subprocess backend with its warm pool full, and the ids of the pooled sandboxes."""
    backend = await manager.backend(BackendName.SUBPROCESS)
    assert isinstance(backend, SubprocessBackend) and backend.pool is not None
    assert await backend.warm_up(60)
    return backend, {id(slot.sandbox) for slot in backend.pool._ready}


PROBE = (
    "import os, resource\n"
    "st = os.statvfs('.')\n"
    "(resource.getrlimit(resource.RLIMIT_NOFILE)[0], os.environ.get('LCI_PROBE'), "
    "st.f_blocks * st.f_frsize >> 20, os.getuid() != 0)"
)


async def test_the_warm_pool_serves_sessions_with_any_limits(settings: Settings) -> None:
    settings.subprocess_warm_pool = 2
    async with SessionManager(settings) as manager:
        backend, pooled = await pooled_backend(manager)
        plain = await manager.create()  # the engine's default limits, as the pool was staged with
        tight = await manager.create(
            SessionSpec(
                limits=settings.limits.model_copy(
                    update={"memory_mb": 64, "open_files": 100, "disk_mb": 8}
                ),
                env={"LCI_PROBE": "tight"},
            )
        )
        assert {id(plain._sandbox), id(tight._sandbox)} == pooled
        defaults = settings.limits
        assert (
            await plain.execute(PROBE)
        ).result_text == f"({defaults.open_files}, None, {defaults.disk_mb}, True)"
        assert (await tight.execute(PROBE)).result_text == "(100, 'tight', 8, True)"
        # The tighter memory limit holds for the whole sandbox; the default one still allows it.
        grab = "x = bytearray(120 << 20); x[::4096] = b'y' * len(x[::4096]); len(x) >> 20"
        assert (await plain.execute(grab)).result_text == "120"
        crashed = await tight.execute(grab)
        assert crashed.error is not None and "memory" in crashed.error.value
        assert tight.info().limits.memory_mb == 64
        # Its restart is a sandbox started for its own spec, not for the pool's.
        assert (await tight.execute(PROBE)).result_text == "(100, 'tight', 8, True)"
        assert tight.info().restarts == 1
        assert await backend.pool.wait_full(60)


async def test_the_pool_raises_limits_as_well_as_lowers_them(settings: Settings) -> None:
    settings.subprocess_warm_pool = 1
    async with SessionManager(settings) as manager:
        _, pooled = await pooled_backend(manager)
        roomy = await manager.create(
            SessionSpec(limits=settings.limits.model_copy(update={"memory_mb": 512}))
        )
        assert id(roomy._sandbox) in pooled
        grab = "x = bytearray(300 << 20); x[::4096] = b'y' * len(x[::4096]); len(x) >> 20"
        assert (await roomy.execute(grab)).result_text == "300"


async def test_sessions_the_pool_cannot_serve_start_fresh(settings: Settings) -> None:
    settings.subprocess_warm_pool = 2
    async with SessionManager(settings) as manager:
        _, pooled = await pooled_backend(manager)
        online = await manager.create(
            SessionSpec(limits=settings.limits.model_copy(update={"network": True}))
        )  # the pool's sandboxes have no network namespace to give back
        throttled = await manager.create(
            SessionSpec(limits=settings.limits.model_copy(update={"cpus": 0.5}))
        )  # nor membership of the cpu cgroup
        tiny = await manager.create(
            SessionSpec(limits=settings.limits.model_copy(update={"memory_mb": 40}))
        )  # nor an agent without its relay (pooled ones started theirs for the pool's limits)
        for session in (online, throttled, tiny):
            assert id(session._sandbox) not in pooled
            assert (await session.execute("1 + 1")).result_text == "2"


async def test_a_pooled_sandbox_that_fails_is_replaced(settings: Settings) -> None:
    settings.subprocess_warm_pool = 2
    async with SessionManager(settings) as manager:
        backend, pooled = await pooled_backend(manager)
        assert backend.pool is not None
        dead, failing = list(backend.pool._ready)
        await dead.sandbox.kill()  # died while waiting: skipped at claim

        async def refuse(spec: SessionSpec) -> None:
            raise SandboxStartError("injected")

        failing.resources.specialize = refuse  # type: ignore[method-assign]
        session = await manager.create()  # the failing slot is discarded, a new sandbox starts
        assert id(session._sandbox) not in pooled
        assert (await session.execute("6 * 7")).result_text == "42"
        assert not os.path.exists(failing.resources.workdir)  # nothing of either slot is left
        assert not os.path.exists(dead.resources.workdir)
        assert await backend.pool.wait_full(60)


async def test_without_the_fork_server_the_pool_stages_fresh_interpreters(
    settings: Settings,
) -> None:
    settings.forkserver = False
    settings.subprocess_warm_pool = 1
    async with SessionManager(settings) as manager:
        _, pooled = await pooled_backend(manager)
        session = await manager.create(
            SessionSpec(
                limits=settings.limits.model_copy(update={"open_files": 90, "disk_mb": 4}),
                env={"LCI_PROBE": "cold"},
            )
        )
        assert id(session._sandbox) in pooled
        assert (await session.execute(PROBE)).result_text == "(90, 'cold', 4, True)"


async def test_a_large_environment_reaches_a_forked_sandbox(fork_settings: Settings) -> None:
    fork_settings.subprocess_warm_pool = 0  # forked on demand: the config travels to the zygote
    async with SessionManager(fork_settings) as manager:
        backend = await ready_backend(manager)
        big = "x" * (256 << 10)  # several pipe buffers' worth
        session = await manager.create(SessionSpec(env={"BIG": big}))
        assert (await session.execute("import os\nlen(os.environ['BIG'])")).result_text == str(
            len(big)
        )
        assert backend.forkserver is not None and backend.forkserver.ready


async def test_a_fork_server_that_stops_answering_is_replaced_by_cold_starts(
    fork_settings: Settings,
) -> None:
    fork_settings.subprocess_warm_pool = 0
    async with SessionManager(fork_settings) as manager:
        backend = await ready_backend(manager)
        forkserver = backend.forkserver
        assert forkserver is not None and forkserver._process is not None
        zygote = forkserver._process
        forkserver.spawn_timeout_s = 1.0
        os.kill(zygote.pid, signal.SIGSTOP)  # alive, but deaf
        session = await manager.create(SessionSpec())
        assert (await session.execute("1 + 1")).result_text == "2"  # started cold
        assert not forkserver.ready
        assert zygote.poll() is not None  # stopped for good, so a late fork cannot happen
