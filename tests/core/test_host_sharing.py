"""Subprocess sandboxes on a host shared with other engines and other users: uids unique across
engines, ownership that holds across PID namespaces, and a session's secrets never on a command
line."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from engine.config import Settings
from engine.core.manager import SessionManager
from engine.models import SessionSpec
from tests.conftest import TEST_LIMITS

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="sandbox uids and cgroups need root")
SECRET = "s3cr3t-" + os.urandom(6).hex()


def _cold(settings: Settings) -> Settings:
    return settings.model_copy(update={"forkserver": False, "subprocess_warm_pool": 0})


def _cmdlines_with(text: str) -> list[str]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        line = " ".join(proc.info["cmdline"] or [])
        if text in line:
            found.append(line[:200])
    return found


async def test_env_secrets_never_reach_a_command_line(settings: Settings) -> None:
    # The cold path: no fork server, no pool; the launcher is started as a fresh interpreter.
    async with SessionManager(_cold(settings)) as manager:
        session = await manager.create(SessionSpec(limits=TEST_LIMITS, env={"API_TOKEN": SECRET}))
        seen = await session.execute("import os\nos.environ['API_TOKEN']")
        assert seen.result_text == repr(SECRET)
        assert _cmdlines_with(SECRET) == []
        restarted = await session.execute("import os\nos._exit(1)")  # a cold restart, too
        assert not restarted.state_preserved
        assert (await session.execute("import os\nos.environ['API_TOKEN']")).result_text == repr(
            SECRET
        )
        assert _cmdlines_with(SECRET) == []


@ROOT_ONLY
async def test_two_engines_never_share_a_sandbox_uid(tmp_path: Path) -> None:
    def engine(name: str) -> Settings:
        return Settings(state_dir=tmp_path / name, limits=TEST_LIMITS, subprocess_warm_pool=0)

    async with SessionManager(engine("a")) as first, SessionManager(engine("b")) as second:
        sessions = [await m.create(SessionSpec()) for m in (first, second) for _ in range(3)]
        uids = [
            int((await s.execute("import os\nos.getuid()")).result_text or "0") for s in sessions
        ]
        assert len(set(uids)) == len(uids), uids
        # A uid whose session closed may be handed out again: it starts with empty keyrings, and
        # keyring calls are refused anyway.
        await sessions[0].close()
        again = await first.create(SessionSpec())
        keys = await again.execute(
            "open('/proc/keys').read() if __import__('os').path.exists('/proc/keys') else ''"
        )
        assert "lci" not in (keys.result_text or "")


ENGINE_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from engine.config import Settings
    from engine.core.manager import SessionManager
    from engine.models import BackendName, Limits, SessionSpec

    async def main(state_dir, rounds):
        limits = Limits(timeout_s=10, memory_mb=256, max_procs=32, disk_mb=16)
        settings = Settings(state_dir=state_dir, limits=limits, subprocess_warm_pool=1)
        async with SessionManager(settings) as manager:
            backend = await manager.backend(BackendName.SUBPROCESS)
            for i in range(rounds):
                session = await manager.create(SessionSpec(limits=limits))
                result = await session.execute(f"open('f', 'w').write('x' * {i})\\n{i} * 2")
                assert result.result_text == str(i * 2), result
                backend.reap_orphans()
                await asyncio.sleep(0.05)
                await manager.close(session.id)
        print("engine ok", flush=True)

    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
    """
)


@ROOT_ONLY
@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs util-linux unshare")
async def test_two_engines_one_in_its_own_pid_namespace_leave_each_other_alone(
    tmp_path: Path,
) -> None:
    state_dir = tmp_path / "state"  # shared: the same owner directories, cgroups and mounts
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    command = [sys.executable, "-c", ENGINE_SCRIPT, str(state_dir), "12"]
    inner = await asyncio.create_subprocess_exec(
        "unshare", "--pid", "--fork", "--mount-proc", *command,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    await asyncio.sleep(3)  # let it start its sessions first
    outer = await asyncio.create_subprocess_exec(
        *command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env
    )
    outputs = await asyncio.wait_for(
        asyncio.gather(inner.communicate(), outer.communicate()), timeout=300
    )
    for name, process, (out, _) in zip(("inner", "outer"), (inner, outer), outputs, strict=True):
        assert process.returncode == 0 and b"engine ok" in out, (name, out.decode()[-3000:])
