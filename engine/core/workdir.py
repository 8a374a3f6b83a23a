"""Host-side access to a session's working directory, safe against what user code leaves there.

The sandbox controls the directory's contents, so every host operation walks it with fd-relative calls
and O_NOFOLLOW (a symlink to /etc/shadow or a FIFO is refused, never followed), touches regular files
only, caps what it reads, and removes trees iteratively (no recursion limit on deep trees).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import PurePosixPath
from typing import ParamSpec, TypeVar

from engine.agent import tree
from engine.errors import FileAccessError, FileNotFound
from engine.models import FileInfo

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_LISTED = 10_000
P = ParamSpec("P")
T = TypeVar("T")


async def off_loop(operation: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run one of the file operations below in a thread. An OSError it does not turn into a clear
    error itself (a full disk while making a directory, say) becomes a FileAccessError."""
    try:
        return await asyncio.to_thread(operation, *args, **kwargs)
    except OSError as exc:
        raise FileAccessError(f"file operation failed: {exc.strerror or exc}") from exc


# Where clients expect the working directory: code written for OpenAI's interpreter saves to
# /mnt/data, code written for E2B's to /home/user. In a sandbox with its own filesystem both are
# the session's workdir mounted again; the file APIs take them as spellings of it.
WORKDIR_ALIASES = ("/mnt/data", "/home/user")


def split_path(path: str, sandbox_root: str | None = None) -> list[str]:
    """Components of a path relative to the workdir; absolute paths must lie under `sandbox_root`
    (the workdir as the sandbox sees it) or one of its aliases (`WORKDIR_ALIASES`)."""
    if "\x00" in path:
        raise FileAccessError("path contains a NUL byte")
    pure = PurePosixPath(path)
    if pure.is_absolute():
        roots = (sandbox_root, *WORKDIR_ALIASES) if sandbox_root is not None else ()
        root = next((r for r in roots if pure.is_relative_to(r)), None)
        if root is None:
            raise FileAccessError(f"path {path!r} is outside the session's working directory")
        pure = pure.relative_to(root)
    parts = [p for p in pure.parts if p not in ("", ".")]
    if not parts or ".." in parts:
        raise FileAccessError(f"path {path!r} does not name a file inside the working directory")
    return parts


def _open_parent(root: str, parts: list[str], create: bool, owner: tuple[int, int] | None) -> int:
    try:
        return tree.open_dir(root, parts[:-1], create, 0o700, owner)
    except tree.Missing as exc:
        raise FileNotFound(str(exc)) from exc
    except tree.Refused as exc:
        raise FileAccessError(str(exc)) from exc


def write_file(root: str, parts: list[str], data: bytes, owner: tuple[int, int] | None) -> None:
    parent = _open_parent(root, parts, create=True, owner=owner)
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(parts[-1], flags | os.O_NONBLOCK, 0o600, dir_fd=parent)
        except OSError as exc:
            raise FileAccessError(f"cannot write {'/'.join(parts)!r}: {exc.strerror}") from exc
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise FileAccessError(f"{'/'.join(parts)!r} is not a regular file")
            view = memoryview(data)
            try:
                while view:
                    view = view[os.write(fd, view) :]
            except OSError as exc:  # the disk limit, usually (ENOSPC, EFBIG)
                # A half-written upload would only hold on to the space that ran out.
                with contextlib.suppress(OSError):
                    os.unlink(parts[-1], dir_fd=parent)
                raise FileAccessError(f"cannot write {'/'.join(parts)!r}: {exc.strerror}") from exc
            if owner:
                os.fchown(fd, *owner)
        finally:
            os.close(fd)
    finally:
        os.close(parent)


def read_file(root: str, parts: list[str], max_bytes: int) -> bytes:
    parent = _open_parent(root, parts, create=False, owner=None)
    try:
        try:
            fd = os.open(
                parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=parent
            )
        except FileNotFoundError as exc:
            raise FileNotFound(f"no file {'/'.join(parts)!r} in the working directory") from exc
        except OSError as exc:
            raise FileAccessError(f"cannot read {'/'.join(parts)!r}: {exc.strerror}") from exc
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise FileAccessError(f"{'/'.join(parts)!r} is not a regular file")
            if info.st_size > max_bytes:
                raise FileAccessError(f"{'/'.join(parts)!r} is larger than {max_bytes} bytes")
            chunks = []
            remaining = max_bytes + 1
            while remaining > 0 and (chunk := os.read(fd, min(remaining, 1 << 20))):
                chunks.append(chunk)
                remaining -= len(chunk)
            data = b"".join(chunks)
            if len(data) > max_bytes:
                raise FileAccessError(f"{'/'.join(parts)!r} is larger than {max_bytes} bytes")
            return data
        finally:
            os.close(fd)
    finally:
        os.close(parent)


def delete_file(root: str, parts: list[str]) -> None:
    """Unlink one regular file (a symlink or directory of that name is refused, not followed)."""
    parent = _open_parent(root, parts, create=False, owner=None)
    name = "/".join(parts)
    try:
        try:
            info = os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError as exc:
            raise FileNotFound(f"no file {name!r} in the working directory") from exc
        if not stat.S_ISREG(info.st_mode):
            raise FileAccessError(f"{name!r} is not a regular file")
        with contextlib.suppress(FileNotFoundError):  # gone meanwhile: deleted all the same
            os.unlink(parts[-1], dir_fd=parent)
    finally:
        os.close(parent)


def list_files(root: str, limit: int = MAX_LISTED) -> list[FileInfo]:
    """Regular files under the workdir (symlinks and special files skipped), at most `limit`."""
    found: list[FileInfo] = []
    for rel, entry_stat in _walk(root):
        if stat.S_ISREG(entry_stat.st_mode):
            found.append(
                FileInfo(path=rel, size=entry_stat.st_size, modified_at=entry_stat.st_mtime)
            )
            if len(found) >= limit:
                break
    return sorted(found, key=lambda f: f.path)


def _walk(root: str, max_depth: int = 32) -> Iterator[tuple[str, os.stat_result]]:
    """Yield (relative path, lstat) for entries down to `max_depth`, iteratively, never following
    links, with at most two directories open at a time."""
    pending: list[list[str]] = [[]]
    while pending:
        parts = pending.pop()
        try:
            fd = _open_dir(root, parts)
        except OSError:
            continue
        try:
            with os.scandir(fd) as entries:
                for entry in entries:
                    if entry.name == tree.SNAPSHOT_DIR and not parts:
                        continue  # lci's own (snapshots' copies), not the user's files
                    info = entry.stat(follow_symlinks=False)
                    yield "/".join([*parts, entry.name]), info
                    if stat.S_ISDIR(info.st_mode) and len(parts) < max_depth:
                        pending.append([*parts, entry.name])
        finally:
            os.close(fd)


def _open_dir(root: str, parts: list[str]) -> int:
    fd = os.open(root, _DIR_FLAGS)
    for part in parts:
        try:
            inner = os.open(part, _DIR_FLAGS, dir_fd=fd)
        finally:
            os.close(fd)
        fd = inner
    return fd


def remove_tree(root: str) -> None:
    """Delete `root` and everything under it, however deep, oddly named or chmod'ed, without
    recursion and with one directory open at a time. Only for trees no process is changing any more
    (the sandbox is dead by then): it climbs back up through "..".
    """
    if not os.path.lexists(root):
        return
    if os.path.islink(root) or not os.path.isdir(root):
        os.unlink(root)
        return
    fd = os.open(root, _DIR_FLAGS)
    depth: list[str] = []
    try:
        while True:
            child = _clear_files(fd)
            if child is not None:
                with contextlib.suppress(OSError):
                    os.chmod(child, 0o700, dir_fd=fd)  # a real directory: lstat said so
                inner = os.open(child, _DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = inner
                depth.append(child)
            elif depth:
                parent = os.open("..", _DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = parent
                os.rmdir(depth.pop(), dir_fd=fd)
            else:
                break
    finally:
        os.close(fd)
    os.rmdir(root)


def _clear_files(fd: int) -> str | None:
    """Unlink every non-directory in the directory `fd`; return one subdirectory's name, if any."""
    subdirectory = None
    with os.scandir(fd) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                subdirectory = subdirectory or entry.name
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.name, dir_fd=fd)
    return subdirectory


_libc = ctypes.CDLL(None, use_errno=True)
MNT_DETACH = 2


def mount_tmpfs(path: str, size_mb: int, uid: int, gid: int) -> None:
    """A size-limited tmpfs as the workdir: an exact disk quota, counted against nothing else."""
    options = f"size={size_mb}m,mode=0700,uid={uid},gid={gid}".encode()
    flags = 2 | 4  # MS_NOSUID | MS_NODEV
    if _libc.mount(b"tmpfs", path.encode(), b"tmpfs", ctypes.c_ulong(flags), options) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"mount tmpfs on {path}: {os.strerror(errno)}")


def resize_tmpfs(path: str, size_mb: int) -> None:
    """Change the size of a workdir tmpfs made by `mount_tmpfs`; its files and owner stay."""
    flags = 32 | 2 | 4  # MS_REMOUNT | MS_NOSUID | MS_NODEV
    options = f"size={size_mb}m".encode()
    if _libc.mount(b"tmpfs", path.encode(), b"tmpfs", ctypes.c_ulong(flags), options) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"resize tmpfs on {path}: {os.strerror(errno)}")


def unmount(path: str) -> None:
    if _libc.umount2(path.encode(), MNT_DETACH) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"unmount {path}: {os.strerror(errno)}")


def mounts_under(prefix: str) -> list[str]:
    """Mount points at or below `prefix`, deepest first."""
    points = []
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            point = line.split()[4].encode().decode("unicode_escape")
            if point == prefix or point.startswith(prefix.rstrip("/") + "/"):
                points.append(point)
    return sorted(points, key=len, reverse=True)


def remove_dir(path: str | os.PathLike[str]) -> None:
    """Unmount whatever is mounted at or below `path`, then delete it; never raises."""
    for point in mounts_under(str(path)):
        with contextlib.suppress(OSError):
            unmount(point)
    with contextlib.suppress(OSError):
        remove_tree(str(path))
