"""No capability is left when user code runs, on both ways a subprocess sandbox starts (forked by
the fork server, which runs the agent without an exec, and exec'd cold), for a root engine and for
an unprivileged one, whose sandboxes live in a user namespace where they once held every
capability: enough to remount the staged agent writable and backdoor the next engine start."""

from __future__ import annotations

import json
import os
import shutil
import site
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import engine
from engine.core.manager import SessionManager
from engine.models import BackendName
from tests.conftest import TEST_LIMITS

NOBODY = 65534
ATTACK = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
sets = {line.split(':')[0]: int(line.split()[1], 16)
        for line in open('/proc/self/status') if line.startswith('Cap')}
agent = os.path.dirname(os.path.dirname(sys.modules['lci_agent'].__file__))
remount = libc.mount(None, agent.encode(), None, 32 | 4096, None)  # MS_REMOUNT | MS_BIND, not RDONLY
remount_errno = ctypes.get_errno()
try:
    open(agent + '/lci_agent/kernel.py', 'a').write('# backdoor\\n')
    wrote = True
except OSError as exc:
    wrote = exc.errno
{'sets': sets, 'remount': remount, 'remount_errno': remount_errno, 'wrote': wrote}
"""
SCRIPT = """
import asyncio, json, os, sys
from engine.config import Settings
from engine.core.manager import SessionManager

async def main():
    settings = Settings(sandbox_python="/usr/bin/python3", state_dir=os.environ["STATE"],
                        forkserver=sys.argv[1] == "forkserver", subprocess_warm_pool=0)
    async with SessionManager(settings) as manager:
        backend = await manager.backend(settings.backend)
        if settings.forkserver:
            assert await backend.wait_forkserver(60), "the fork server did not start"
        session = await manager.create()
        result = await session.execute(os.environ["ATTACK"])
        print(json.dumps({"result": result.result_text, "error": str(result.error),
                          "userns": session.info().isolation.pid_namespace}))

asyncio.run(main())
"""


def _literal(text: str | None) -> dict[str, object]:
    import ast

    assert text is not None
    value: dict[str, object] = ast.literal_eval(text)
    return value


def _assert_contained(report: dict[str, object]) -> None:
    sets = report["sets"]
    assert isinstance(sets, dict)
    assert all(value == 0 for value in sets.values()), sets
    assert report["remount"] == -1 and report["remount_errno"] == 1  # EPERM
    assert report["wrote"] is not True


@pytest.mark.parametrize("forkserver", [True, False], ids=["forkserver", "cold"])
async def test_root_engine_leaves_no_capability(tmp_path: Path, forkserver: bool) -> None:
    if os.geteuid() != 0:
        pytest.skip("the root engine's sandboxes")
    from engine.config import Settings

    settings = Settings(
        state_dir=tmp_path / "state",
        limits=TEST_LIMITS,
        forkserver=forkserver,
        subprocess_warm_pool=0,
    )
    async with SessionManager(settings) as manager:
        if forkserver:
            backend = await manager.backend(BackendName.SUBPROCESS)
            assert await backend.wait_forkserver(60)  # type: ignore[attr-defined]
        session = await manager.create()
        result = await session.execute(ATTACK)
    assert result.error is None, result.error
    _assert_contained(_literal(result.result_text))


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A directory other users can reach (pytest's own tmp_path sits below a 0700 directory)."""
    path = Path(tempfile.mkdtemp(prefix="lci-caps-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("forkserver", [True, False], ids=["forkserver", "cold"])
def test_unprivileged_engine_leaves_no_capability_in_the_user_namespace(
    public_dir: Path, forkserver: bool
) -> None:
    if os.geteuid() != 0:
        pytest.skip("switching to an unprivileged user needs root")
    system_python = Path("/usr/bin/python3")
    version = subprocess.run(
        [system_python, "-c", "import sys; print(sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    if version != str(sys.version_info[:2]):
        pytest.skip(f"/usr/bin/python3 is {version}, not this interpreter's version")
    packages = [Path(p) for p in site.getsitepackages()]
    if not all(part.stat().st_mode & stat.S_IXOTH for p in packages for part in [p, *p.parents]):
        pytest.skip("this environment's site-packages are not readable by other users")
    shared = public_dir / "shared"
    shutil.copytree(Path(engine.__file__).parent, shared / "engine")
    for directory in (public_dir, shared):
        directory.chmod(0o1777)
    subprocess.run(["chmod", "-R", "a+rX", str(shared)], check=True)
    env = {
        "PATH": "/usr/bin:/bin",
        "STATE": str(public_dir / "state"),
        "ATTACK": ATTACK,
        "PYTHONPATH": os.pathsep.join([str(shared), *map(str, packages)]),
    }
    mode = "forkserver" if forkserver else "cold"
    run = subprocess.run(
        [system_python, "-c", SCRIPT, mode],
        env=env,
        capture_output=True,
        text=True,
        user=NOBODY,
        group=NOBODY,
        extra_groups=[],
        cwd=shared,
        timeout=180,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    outcome = json.loads(run.stdout.splitlines()[-1])
    if not outcome["userns"]:
        pytest.skip("unprivileged user namespaces are disabled on this kernel")
    assert outcome["error"] == "None", outcome
    _assert_contained(_literal(outcome["result"]))
    staged = next((public_dir / "state").glob("agent-*/lci_agent/kernel.py"))
    assert "backdoor" not in staged.read_text()
