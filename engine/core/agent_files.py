"""Stages the agent package where sandboxes can read it, and builds the command that starts it."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import shutil
import stat
import tarfile
from pathlib import Path

import engine.agent
from engine.core import workdir as wd
from engine.core.state_dir import UnsafeStateDir, check_private, prepare_state_dir

log = logging.getLogger(__name__)

AGENT_PACKAGE = "lci_agent"
_SOURCE = Path(engine.agent.__file__).parent


def _digest() -> str:
    digest = hashlib.sha256()
    for path in sorted(_SOURCE.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _staged_digest(package: Path) -> str | None:
    """The digest of a staged copy, computed like `_digest`; None when anything in it is not a
    regular `.py` file owned by this user and writable only by it (someone could change it)."""
    digest = hashlib.sha256()
    try:
        check_private(package.parent, "staged agent")
        check_private(package, "staged agent")
        names = sorted(os.listdir(package))
        for name in names:
            fd = os.open(package / name, os.O_RDONLY | os.O_NOFOLLOW)
            with os.fdopen(fd, "rb") as handle:
                info = os.fstat(handle.fileno())
                if (
                    not name.endswith(".py")
                    or not stat.S_ISREG(info.st_mode)
                    or info.st_uid != os.geteuid()
                    or info.st_mode & 0o022
                ):
                    return None
                digest.update(name.encode() + b"\0" + handle.read())
    except (OSError, UnsafeStateDir):
        return None
    return digest.hexdigest()[:16]


def agent_digest() -> str:
    """A digest of the agent's source: images with the agent built in carry it as a label
    (`sandbox_images/build_offline.sh` computes the same)."""
    return _digest()


def agent_tar() -> bytes:
    """The agent as a tar archive of `lci_agent/*.py` (root-owned, world-readable), for sandboxes
    that get it through an API rather than a shared filesystem. A few hundred kilobytes."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        folder = tarfile.TarInfo(AGENT_PACKAGE)
        folder.type, folder.mode = tarfile.DIRTYPE, 0o755
        archive.addfile(folder)
        for path in sorted(_SOURCE.glob("*.py")):
            data = path.read_bytes()
            member = tarfile.TarInfo(f"{AGENT_PACKAGE}/{path.name}")
            member.size, member.mode = len(data), 0o644
            archive.addfile(member, io.BytesIO(data))
    return buffer.getvalue()


def stage_agent(state_dir: Path) -> Path:
    """Copy the agent into `state_dir/agent-<digest>/lci_agent` (world-readable, owned by the engine's
    user, so sandboxes can read but never change it) and return the directory that contains it."""
    prepare_state_dir(state_dir)
    expected = _digest()
    root = state_dir / f"agent-{expected}"
    package = root / AGENT_PACKAGE
    if os.path.lexists(root):
        # Reused only when its content is what this engine would stage: a copy changed since (by
        # another user, or by a sandbox that got write access to it) is replaced, never run.
        if _staged_digest(package) == expected:
            return root
        log.warning("the staged agent in %s does not match its digest; staging it again", root)
        stale = state_dir / f".stale-{os.getpid()}-{os.urandom(4).hex()}"
        os.rename(root, stale)
        wd.remove_dir(stale)
    staging = state_dir / f".agent-{os.getpid()}-{os.urandom(4).hex()}"
    (staging / AGENT_PACKAGE).mkdir(parents=True)
    for path in _SOURCE.glob("*.py"):
        shutil.copyfile(path, staging / AGENT_PACKAGE / path.name)
        (staging / AGENT_PACKAGE / path.name).chmod(0o644)
    (staging / AGENT_PACKAGE).chmod(0o755)
    staging.chmod(0o755)
    try:
        staging.rename(root)
    except OSError:  # another engine staged the same digest first
        shutil.rmtree(staging, ignore_errors=True)
        if _staged_digest(package) != expected:
            raise UnsafeStateDir(f"the staged agent in {root} does not match its digest") from None
    return root


def bootstrap_argv(
    python: str, agent_root: str, *agent_args: str, module: str = "entry"
) -> list[str]:
    """`python -I -B -u -c ...`: isolated mode (no PYTHON* variables, no user site, no script or
    working directory on sys.path), so files the user writes cannot shadow modules. Only the
    read-only agent directory is added to the path. `module` is the agent module whose `main`
    runs (`entry`, which starts the relay and the kernel, or the file helper)."""
    code = (
        f"import sys; sys.path.insert(0, {agent_root!r}); "
        f"from {AGENT_PACKAGE}.{module} import main; main()"
    )
    return [python, "-I", "-B", "-u", "-c", code, *agent_args]


if __name__ == "__main__":  # `python3 -m engine.core.agent_files`: the digest, for image builds
    print(agent_digest())
