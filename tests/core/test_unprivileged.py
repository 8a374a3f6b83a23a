"""The subprocess backend run by an unprivileged user: it still isolates with user namespaces where
the kernel allows them, and reports exactly what it could not do (no cgroups, no separate uid)."""

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

NOBODY = 65534
SCRIPT = """
import asyncio, json, os
from engine.config import Settings
from engine.core.manager import SessionManager

async def main():
    settings = Settings(sandbox_python="/usr/bin/python3", state_dir=os.environ["STATE"])
    async with SessionManager(settings) as manager:
        session = await manager.create()
        probe = await session.execute(
            "import os, socket; os.getuid(), [n for _, n in socket.if_nameindex()], "
            "os.path.exists('/root'), os.getcwd()")
        bomb = await session.execute("x = bytearray(4 * 1024**3)")
        shell = await session.commands.run("echo $(id -u) $(pwd) $(test -e /root && echo root)")
        print(json.dumps({"isolation": session.info().isolation.model_dump(),
                          "probe": probe.result_text, "bomb": bomb.error and bomb.error.name,
                          "shell": shell.stdout.strip()}))

asyncio.run(main())
"""


def world_traversable(path: Path) -> bool:
    return all(part.stat().st_mode & stat.S_IXOTH for part in [path, *path.parents])


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A directory other users can reach (pytest's own tmp_path sits below a 0700 directory)."""
    path = Path(tempfile.mkdtemp(prefix="lci-unprivileged-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_unprivileged_engine_uses_user_namespaces_and_reports_the_rest(public_dir: Path) -> None:
    tmp_path = public_dir
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
    if not all(world_traversable(p) for p in packages):
        pytest.skip("this environment's site-packages are not readable by other users")
    shared = tmp_path / "shared"
    shutil.copytree(Path(engine.__file__).parent, shared / "engine")
    for directory in (tmp_path, shared):
        directory.chmod(0o1777)
    subprocess.run(["chmod", "-R", "a+rX", str(shared)], check=True)
    env = {
        "PATH": "/usr/bin:/bin",
        "STATE": str(tmp_path / "state"),
        "PYTHONPATH": os.pathsep.join([str(shared), *map(str, packages)]),
    }
    run = subprocess.run(
        [system_python, "-c", SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        user=NOBODY,
        group=NOBODY,
        extra_groups=[],
        cwd=shared,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.splitlines()[-1])
    isolation = report["isolation"]
    assert not isolation["separate_user"]
    assert isolation["memory_limit"] == "per_process" and isolation["process_limit"] == "per_user"
    assert any("cgroups" in note for note in isolation["notes"])
    assert report["bomb"] == "MemoryError"
    if isolation["pid_namespace"]:  # unprivileged user namespaces are enabled on this kernel
        assert report["probe"] == f"({NOBODY}, ['lo'], False, '/workspace')"
        assert report["shell"] == f"{NOBODY} /workspace"  # commands join the same namespaces
    else:
        assert any("no namespaces" in note for note in isolation["notes"])
