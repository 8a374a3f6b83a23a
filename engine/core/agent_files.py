"""Stages the agent package where sandboxes can read it, and builds the command that starts it."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import engine.agent

AGENT_PACKAGE = "lci_agent"
_SOURCE = Path(engine.agent.__file__).parent


def _digest() -> str:
    digest = hashlib.sha256()
    for path in sorted(_SOURCE.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def stage_agent(state_dir: Path) -> Path:
    """Copy the agent into `state_dir/agent-<digest>/lci_agent` (world-readable, owned by the engine's
    user, so sandboxes can read but never change it) and return the directory that contains it."""
    root = state_dir / f"agent-{_digest()}"
    package = root / AGENT_PACKAGE
    if package.is_dir():
        return root
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
    return root


def bootstrap_argv(python: str, agent_root: str, *agent_args: str) -> list[str]:
    """`python -I -B -u -c ...`: isolated mode (no PYTHON* variables, no user site, no script or
    working directory on sys.path), so files the user writes cannot shadow modules. Only the
    read-only agent directory is added to the path."""
    code = (
        f"import sys; sys.path.insert(0, {agent_root!r}); "
        f"from {AGENT_PACKAGE}.kernel import main; main()"
    )
    return [python, "-I", "-B", "-u", "-c", code, *agent_args]
