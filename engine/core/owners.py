"""Which engine owns a sandbox, workdir or cgroup, and whether that engine still runs.

An engine tags what it creates with its owner tag; the reapers of both backends remove what belongs
to tags whose engine is gone. Liveness is a lock, not a pid: each engine holds an exclusive flock on
its tag's file in one host-wide directory for as long as it runs, and the kernel drops that lock when
the process dies, however it dies. A pid would only mean something inside one PID namespace: an
engine running in its own (as in a container) would look dead to an engine outside it, which would
then remove its cgroups and mounts while it used them."""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import threading
from pathlib import Path

import psutil


def _lock_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/run/lci/owners")
    return Path(tempfile.gettempdir()) / f"lci-owners-{os.getuid()}"


LOCK_DIR = _lock_dir()
_guard = threading.Lock()
_owner: tuple[int, str, int] | None = None  # (pid, tag, lock descriptor) of this process


def owner_tag() -> str:
    """This engine process's tag, "<pid>.<start time>", holding its lock from the first call on.
    The same pid and start second in another PID namespace is possible; the second engine to
    find the lock taken adds a random part."""
    global _owner
    with _guard:
        if _owner is None or _owner[0] != os.getpid():  # a forked child is an owner of its own
            tag = f"{os.getpid()}.{int(psutil.Process().create_time())}"
            fd = _hold_lock(tag)
            if fd < 0:
                tag = f"{tag}.{os.urandom(4).hex()}"
                fd = _hold_lock(tag)
            _owner = (os.getpid(), tag, fd)
        return _owner[1]


def _hold_lock(tag: str) -> int:
    """Create the tag's lock file already locked: locked under a temporary name, then renamed, so
    no reaper ever sees it unlocked while its owner lives. -1 if a live owner holds the tag."""
    LOCK_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
    if _lock_held(tag):
        return -1
    staging = LOCK_DIR / f".{tag}.{os.urandom(4).hex()}"
    fd = os.open(staging, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.rename(staging, LOCK_DIR / f"{tag}.lock")
    return fd


def owner_alive(tag: str) -> bool:
    if _owner is not None and tag == _owner[1] and _owner[0] == os.getpid():
        return True
    if "/" in tag or tag.startswith("."):
        return False
    held = _lock_held(tag)
    if held is None:
        # No lock file: an engine from before the locks (or one already found dead), judged by
        # its pid and start time.
        return _pid_alive(tag)
    if not held:
        with contextlib.suppress(OSError):
            (LOCK_DIR / f"{tag}.lock").unlink()  # its owner is gone; no file means the same
    return held


def _lock_held(tag: str) -> bool | None:
    """Whether the tag's lock is held; None when it has no lock file."""
    try:
        fd = os.open(LOCK_DIR / f"{tag}.lock", os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError:
        return True  # cannot tell: keep what it owns
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _pid_alive(tag: str) -> bool:
    pid_text, _, started = tag.partition(".")
    try:
        return int(psutil.Process(int(pid_text)).create_time()) == int(started)
    except (ValueError, psutil.Error):
        return False
