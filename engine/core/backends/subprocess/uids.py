"""Sandbox uids, unique on the host: a session holds an exclusive lock on its uid's file in one
host-wide directory for as long as it lives, so no two live sessions share a uid, whichever engine
(or engine run) they belong to. The kernel drops the lock when its holder dies, so a crashed
engine's uids become free by themselves.

A shared uid would mean a shared process limit (RLIMIT_NPROC counts per uid), shared keyrings and
signals between sessions. A uid that is reused starts clean: its sandbox clears its keyrings
before anything else runs (launcher), and the syscall filter refuses keyring calls anyway."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

LOCK_DIR = Path("/run/lci/uids")
_SPAN = 1_000_000


class UidLease:
    """One uid, held until `release()` (or the holder's death)."""

    def __init__(self, uid: int, fd: int) -> None:
        self.uid = uid
        self._fd = fd

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing the only descriptor drops the lock
            self._fd = -1


def lease_uid(base: int, start: int, lock_dir: Path = LOCK_DIR) -> UidLease:
    """The first free uid at or after `base + start` (wrapping within the range). Raises OSError
    when the lock directory cannot be used or every uid is taken."""
    lock_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    for step in range(_SPAN):
        uid = base + (start + step) % _SPAN
        fd = os.open(lock_dir / f"{uid}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(fd)
            raise
        return UidLease(uid, fd)
    raise OSError("every sandbox uid is in use")
