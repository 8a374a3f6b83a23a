"""Subprocess-backend specifics: the isolation it reports, and that closing leaves nothing behind."""

from __future__ import annotations

import asyncio
import os
import signal

import psutil

from engine.config import Settings
from engine.core.manager import SessionManager
from engine.models import SessionSpec


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def sandbox_processes(settings: Settings) -> list[psutil.Process]:
    """This test process's sandbox processes (launchers, inits, agents and whatever they started)."""
    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if proc.uids().real >= settings.sandbox_uid_base or "launcher.py" in " ".join(
                proc.cmdline()
            ):
                found.append(proc)
        except psutil.NoSuchProcess:
            continue
    return found


async def test_isolation_is_reported(settings: Settings) -> None:
    async with SessionManager(settings) as manager:
        info = (await manager.create(SessionSpec())).info()
    isolation = info.isolation
    if os.geteuid() == 0:
        assert isolation.separate_user and isolation.pid_namespace and isolation.network_namespace
        assert isolation.private_filesystem and isolation.disk_limit == "exact"
    else:
        assert not isolation.separate_user and isolation.notes


async def test_close_all_leaves_no_processes_mounts_or_dirs(settings: Settings) -> None:
    async with SessionManager(settings) as manager:
        sessions = [await manager.create(SessionSpec()) for _ in range(2)]
        await sessions[0].execute("import subprocess\nsubprocess.Popen(['sleep', '300'])")
        assert sandbox_processes(settings)
    assert sandbox_processes(settings) == []
    with open("/proc/self/mountinfo") as handle:
        assert str(settings.state_dir) not in handle.read()
    assert [p.name for p in settings.state_dir.iterdir() if p.name.startswith("owner-")] == []


async def test_orphans_of_a_dead_engine_are_reaped(settings: Settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    script = (
        "import asyncio, os, signal, sys\n"
        "from engine.config import Settings\n"
        "from engine.core.manager import SessionManager\n"
        "async def main():\n"
        f"    manager = SessionManager(Settings(state_dir={str(settings.state_dir)!r}))\n"
        "    session = await manager.create()\n"
        '    await session.execute(\'open("left", "w").write("behind")\')\n'
        "    import psutil\n"
        "    tree = [str(p.pid) for p in psutil.Process().children(recursive=True)]\n"
        "    print('ready', *tree, flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "asyncio.run(main())\n"
    )
    engine = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert engine.returncode == -signal.SIGKILL and "ready" in engine.stdout
    assert [p for p in settings.state_dir.iterdir() if p.name.startswith("owner-")]
    async with SessionManager(settings) as manager:
        await manager.create(SessionSpec())  # starting a backend reaps what the dead engine left
        owners = [p for p in settings.state_dir.iterdir() if p.name.startswith("owner-")]
        assert len(owners) == 1
    sandbox_pids = [int(pid) for pid in engine.stdout.split()[1:]]
    assert len(sandbox_pids) >= 1
    assert not [pid for pid in sandbox_pids if _running(pid)]
    with open("/proc/self/mountinfo") as mounts:
        assert str(settings.state_dir) not in mounts.read()


async def test_sandbox_process_credentials_and_view(settings: Settings) -> None:
    if os.geteuid() != 0:
        import pytest

        pytest.skip("the private root filesystem and uid drop need root")
    code = (
        "import os\n"
        "status = dict(l.split(':\\t', 1) for l in open('/proc/self/status').read().splitlines())\n"
        "(status['CapEff'].strip(), status['NoNewPrivs'].strip(), os.getuid() != 0,\n"
        " os.path.exists('/var/run/docker.sock'), os.path.exists('/root/.bashrc'),\n"
        " sorted(int(p) for p in os.listdir('/proc') if p.isdigit())[:1],\n"
        " open('/proc/self/oom_score_adj').read().strip())"
    )
    async with SessionManager(settings) as manager:
        session = await manager.create(SessionSpec())
        result = await session.execute(code)
    assert result.result_text == "('0000000000000000', '1', True, False, False, [1], '1000')"


async def test_cpu_quota_is_enforced(settings: Settings) -> None:
    if os.geteuid() != 0:
        import pytest

        pytest.skip("CPU quotas need cgroups, which need root")
    limits = settings.limits.model_copy(update={"cpus": 0.25, "timeout_s": 10})
    code = (
        "import time\nstart, cpu = time.monotonic(), time.process_time()\n"
        "while time.monotonic() - start < 1.0:\n    pass\n"
        "round(time.process_time() - cpu, 2)"
    )
    async with SessionManager(settings) as manager:
        session = await manager.create(SessionSpec(limits=limits))
        assert session.info().isolation.cpu_quota
        used = float((await session.execute(code)).result_text or "nan")
    assert used < 0.5  # a quarter of a core for one second, with room for accounting slack


async def test_closing_a_busy_session_starts_nothing_new(settings: Settings) -> None:
    settings.subprocess_warm_pool = 0  # only the session's own sandbox may show up
    async with SessionManager(settings) as manager:
        session = await manager.create(SessionSpec())
        running = asyncio.create_task(session.execute("import time\ntime.sleep(60)"))
        await asyncio.sleep(0.5)
        await manager.close(session.id)
        result = await asyncio.wait_for(running, 10)
        await asyncio.sleep(0.5)  # a restart, had one been started, would be up by now
        left = [p for p in sandbox_processes(settings) if "zygote.py" not in " ".join(p.cmdline())]
        assert left == []
        assert session.info().state == "closed" and session.info().restarts == 0
        assert not result.state_preserved
