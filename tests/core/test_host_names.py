"""What a cell can read about the host from inside its sandbox, on both backends: PID 1's command
line names none of the host's paths (the engine's interpreter, its virtualenv, the repository), and
the cgroup path in /proc/self/cgroup does not name the engine's pid. The subprocess sandbox's init
was started as `<venv>/bin/python <repo>/.../launcher.py`, and its cgroup is `/lci/<engine pid>...`
on the host."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

from engine.config import Settings
from engine.core.manager import SessionManager
from engine.core.session import Session
from engine.models import SessionSpec
from tests.conftest import TEST_LIMITS

REPO = Path(__file__).resolve().parents[2]

PROBE = """
import json
print(json.dumps({
    'init': open('/proc/1/cmdline', 'rb').read().decode(errors='replace'),
    'cgroup': open('/proc/self/cgroup').read(),
}))
"""


def _host_paths() -> list[str]:
    paths = {sys.prefix, sys.base_prefix, sys.executable, str(REPO)}
    return sorted(p for p in paths if p and p != "/usr")


async def _seen(session: Session) -> dict[str, str]:
    done = await session.execute(PROBE)
    assert done.error is None, done.error
    seen: dict[str, str] = json.loads(done.stdout)
    return seen


def _check(seen: dict[str, str]) -> None:
    init = seen["init"]
    assert init.strip("\0"), "PID 1 has no command line at all"
    leaked = [path for path in _host_paths() if path in init]
    assert not leaked, f"PID 1's command line shows the host's {leaked}: {init!r}"
    engine_pid = str(os.getpid())
    for line in seen["cgroup"].splitlines():
        path = line.split(":", 2)[2]
        assert engine_pid not in re.split(r"[^0-9A-Za-z]+", path), (
            f"the cgroup path names the engine's pid {engine_pid}: {line!r}"
        )


async def test_the_sandbox_sees_no_host_path_in_init_and_no_engine_pid_in_its_cgroup(
    session: Session,
) -> None:
    _check(await _seen(session))


async def test_the_same_for_a_sandbox_started_cold(settings: Settings) -> None:
    """No fork server and no pool: the launcher is a fresh interpreter, started by path."""
    cold = settings.model_copy(update={"forkserver": False, "subprocess_warm_pool": 0})
    async with SessionManager(cold) as manager:
        session = await manager.create(SessionSpec(limits=TEST_LIMITS))
        _check(await _seen(session))
