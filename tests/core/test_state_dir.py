"""The state directory is trusted only when this engine's user made it: a directory prepared by
another user, a tampered staged agent and a symlink planted in the seed are the attacks."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import shutil
import site
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import engine
from engine.config import Settings
from engine.core.agent_files import AGENT_PACKAGE, stage_agent
from engine.core.manager import SessionManager
from engine.core.state_dir import UnsafeStateDir, prepare_state_dir
from engine.models import BackendName, SessionSpec
from tests.conftest import TEST_LIMITS

NOBODY = 65534


def test_a_new_state_dir_is_private(tmp_path: Path) -> None:
    state = prepare_state_dir(tmp_path / "state")
    info = state.lstat()
    assert info.st_uid == os.geteuid() and info.st_mode & 0o777 == 0o711


def test_a_state_dir_others_could_swap_out_is_refused(tmp_path: Path) -> None:
    (tmp_path / "open").mkdir()
    (tmp_path / "open").chmod(0o777)  # no sticky bit: anyone may rename entries in it
    with pytest.raises(UnsafeStateDir, match="not sticky"):
        prepare_state_dir(tmp_path / "open" / "state")


@pytest.mark.parametrize("attack", ["world_writable", "symlink", "foreign_owner"])
async def test_a_state_dir_someone_else_could_write_is_refused(tmp_path: Path, attack: str) -> None:
    state = tmp_path / "state"
    if attack == "symlink":
        (tmp_path / "elsewhere").mkdir(mode=0o711)
        state.symlink_to(tmp_path / "elsewhere")
    else:
        state.mkdir()
        state.chmod(0o777)  # how a local user leaves it for the engine to find
        if attack == "foreign_owner":
            if os.geteuid() != 0:
                pytest.skip("handing the directory to another user needs root")
            os.chown(state, NOBODY, NOBODY)
            state.chmod(0o755)
    settings = Settings(state_dir=state, limits=TEST_LIMITS, subprocess_warm_pool=0)
    async with SessionManager(settings) as manager:
        with pytest.raises(UnsafeStateDir) as caught:
            await manager.create(SessionSpec(backend=BackendName.SUBPROCESS))
    assert str(state) in caught.value.message
    assert caught.value.code == "backend_unavailable"


async def test_a_tampered_staged_agent_is_replaced_not_run(tmp_path: Path) -> None:
    state = tmp_path / "state"
    root = stage_agent(state)
    marker = tmp_path / "backdoor-ran"
    kernel = root / AGENT_PACKAGE / "kernel.py"
    kernel.chmod(0o644)
    with kernel.open("a") as handle:  # what a sandbox with write access to it once did
        handle.write(f"\nopen({str(marker)!r}, 'w').write('owned')\n")
    settings = Settings(
        state_dir=state, limits=TEST_LIMITS, subprocess_warm_pool=0, forkserver=False
    )
    async with SessionManager(settings) as manager:
        session = await manager.create(SessionSpec(backend=BackendName.SUBPROCESS))
        assert (await session.execute("6 * 7")).result_text == "42"
    assert not marker.exists()
    assert "backdoor" not in kernel.read_text()


async def test_a_symlink_in_the_seed_does_not_carry_a_host_file_in(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the seed is copied by the private root filesystem, built as root")
    secret = tmp_path / "shadow"
    secret.write_text("root:SECRET-HASH:19000::::::\n")
    secret.chmod(0o600)
    settings = Settings(
        state_dir=tmp_path / "state", limits=TEST_LIMITS, subprocess_warm_pool=0, forkserver=False
    )
    # The seed the engine would reuse, with a planted link (as the engine's own user could not be
    # tricked into making, but a copy that follows links would still carry it in).
    key = hashlib.sha256(os.path.realpath(settings.sandbox_python).encode()).hexdigest()[:12]
    seed = prepare_state_dir(settings.state_dir) / f"seed-{key}" / "matplotlib"
    seed.mkdir(parents=True, mode=0o755)
    (seed / "fontlist.json").write_text("{}")
    (seed / "stolen").symlink_to(secret)
    (seed / "linked-dir").symlink_to(tmp_path)
    async with SessionManager(settings) as manager:
        session = await manager.create(SessionSpec(backend=BackendName.SUBPROCESS))
        code = "import os; sorted(os.listdir('/tmp/lci-seed/matplotlib'))"
        listing = await session.execute(code)
        assert listing.error is None, listing.error
        # matplotlib may add its own versioned font cache there; the planted links never arrive.
        names = set(ast.literal_eval(listing.result_text or "[]"))
        assert not names & {"stolen", "linked-dir"}, names
        leak = await session.execute("import glob; [open(p).read() for p in glob.glob('/tmp/**')]")
        assert "SECRET-HASH" not in (leak.result_text or "")


DEFAULT_DIR_SCRIPT = """
import json, os
from engine.config import Settings
from engine.core.agent_files import stage_agent
state = Settings().state_dir
stage_agent(state)
print(json.dumps({"path": str(state), "owner": os.lstat(state).st_uid}))
"""


def test_the_default_state_dir_is_per_user_so_root_first_does_not_lock_others_out() -> None:
    """Root uses the default first (one `sudo lci`), then `nobody` does: each gets its own."""
    if os.geteuid() != 0:
        pytest.skip("switching to another user needs root")
    python = Path("/usr/bin/python3")
    if not python.exists() or _python_version(python) != str(sys.version_info[:2]):
        pytest.skip("/usr/bin/python3 is missing or not this interpreter's version")
    packages = [Path(p) for p in site.getsitepackages()]
    if not all(_world_traversable(p) for p in packages):
        pytest.skip("this environment's site-packages are not readable by other users")
    public = Path(tempfile.mkdtemp(prefix="lci-default-state-", dir="/tmp"))
    try:
        shutil.copytree(Path(engine.__file__).parent, public / "code" / "engine")
        subprocess.run(["chmod", "-R", "a+rX", str(public / "code")], check=True)
        (public / "tmp").mkdir()
        (public / "tmp").chmod(0o1777)  # what /tmp is; TMPDIR keeps the test off the real /tmp
        public.chmod(0o755)
        env = {
            "PATH": "/usr/bin:/bin",
            "TMPDIR": str(public / "tmp"),
            "PYTHONPATH": os.pathsep.join([str(public / "code"), *map(str, packages)]),
        }
        reports = {uid: _default_dir_as(python, uid, env, public) for uid in (0, NOBODY)}
    finally:
        shutil.rmtree(public, ignore_errors=True)
    assert reports[0] == {"path": str(public / "tmp" / "lci-0"), "owner": 0}
    assert reports[NOBODY] == {"path": str(public / "tmp" / f"lci-{NOBODY}"), "owner": NOBODY}


def _default_dir_as(python: Path, uid: int, env: dict[str, str], cwd: Path) -> dict[str, object]:
    run = subprocess.run(
        [python, "-c", DEFAULT_DIR_SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        user=uid,
        group=uid,
        extra_groups=[],
        cwd=cwd,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    report: dict[str, object] = json.loads(run.stdout.splitlines()[-1])
    return report


def _python_version(python: Path) -> str:
    check = [python, "-c", "import sys; print(sys.version_info[:2])"]
    return subprocess.run(check, capture_output=True, text=True, check=False).stdout.strip()


def _world_traversable(path: Path) -> bool:
    return all(part.stat().st_mode & stat.S_IXOTH for part in [path, *path.parents])
