"""The engine's state directory (`LCI_STATE_DIR`, default `/tmp/lci-<uid>`): staged agent code, caches
copied into sandboxes, session workdirs. Whoever controls it controls what runs in every sandbox, so
it is trusted only when this engine's user made it: it is created exclusively (mode 0711), and one
found already there is refused unless it is a real directory owned by this user that no other user
can write to."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from engine.errors import BackendUnavailable


class UnsafeStateDir(BackendUnavailable):
    """The state directory exists but another user could have put something into it."""


def prepare_state_dir(path: Path) -> Path:
    """Create `path` (mode 0711) or check that the one found is safe to use; UnsafeStateDir if not."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(path, 0o711)
    except FileExistsError:
        pass
    else:
        os.chmod(path, 0o711)  # mkdir's mode went through the umask
    check_private(path, "state directory")
    parent = os.stat(path.parent)
    if parent.st_mode & 0o022 and not parent.st_mode & stat.S_ISVTX:
        # Without the sticky bit (as /tmp has) other users could rename it away and put their own
        # in its place.
        raise UnsafeStateDir(
            f"the state directory's parent {path.parent} is writable by other users and not "
            "sticky; point LCI_STATE_DIR elsewhere"
        )
    return path


def prepare_private_dir(path: Path, what: str) -> Path:
    """Create `path` (mode 0700) inside a prepared state directory, or check that the one found is
    this user's and writable by nobody else; UnsafeStateDir if not."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    check_private(path, what)
    return path


def check_state_dir(path: Path, subdirs: tuple[str, ...] = ()) -> Path:
    """Prepare the state directory and the `subdirs` a server keeps in it, and refuse the whole
    directory when anything already in it belongs to another user: such an entry means another
    user could once write there, and may have left links or records for this engine to follow.
    UnsafeStateDir names the first offending path."""
    prepare_state_dir(path)
    for name in subdirs:
        prepare_private_dir(path / name, "state subdirectory")
    with os.scandir(path) as entries:
        for entry in entries:
            owner = entry.stat(follow_symlinks=False).st_uid
            if owner != os.geteuid():
                raise UnsafeStateDir(
                    f"{entry.path} in the state directory belongs to uid {owner}, not to this "
                    f"engine's user (uid {os.geteuid()}): another user may have prepared it; "
                    "remove it, or point LCI_STATE_DIR at a directory of your own"
                )
    return path


def check_private(path: Path, what: str) -> os.stat_result:
    """The lstat of `path` if it is a directory owned by this user and writable by nobody else."""
    try:
        info = os.lstat(path)
    except OSError as exc:
        raise UnsafeStateDir(f"{what} {path} is unusable: {exc.strerror}") from exc
    fix = "remove it, or point LCI_STATE_DIR at a directory of your own"
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeStateDir(f"{what} {path} is not a directory (a symlink?); {fix}")
    if info.st_uid != os.geteuid():
        raise UnsafeStateDir(
            f"{what} {path} belongs to uid {info.st_uid}, not to this engine's user "
            f"(uid {os.geteuid()}): another user may have prepared it; {fix}"
        )
    if info.st_mode & 0o022:
        raise UnsafeStateDir(
            f"{what} {path} has mode {stat.S_IMODE(info.st_mode):04o}: other users can write to "
            f"it; {fix} (or chmod go-w it)"
        )
    return info
