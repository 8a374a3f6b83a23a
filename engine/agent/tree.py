"""Directories and entries of a session's workdir: stat, list, make, remove, move, annotate.

Shared by both backends: the subprocess backend's host calls these functions on the workdir
directly, the docker backend's file helper (`files.py`, in the keeper container) calls them on the
volume. Standard library only, as everything in the agent.

Every walk is fd-relative with O_NOFOLLOW, from the workdir down: a symlink anywhere in a path is
refused, never followed (a link is only ever stat'ed, read with readlink, renamed or unlinked as
itself); nothing is opened but directories; trees are walked iteratively with bounded depth.
Entries are plain dicts (the engine turns them into its models):

    {"name", "path", "type": "file" | "dir" | "symlink" | "other", "size", "mode", "permissions",
     "owner", "group", "mtime", "mtime_ns", "inode", "target", "metadata"}

`path` is relative to the workdir ("" for the workdir itself); `target` is a symlink's text;
`metadata` the `user.e2b.*` extended attributes (E2B's file metadata) or null.
"""

from __future__ import annotations

import contextlib
import errno
import grp
import os
import pwd
import stat
from typing import Any

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_DEPTH = 32
MAX_REMOVE_DEPTH = 256  # one open directory per level while removing
METADATA_PREFIX = "user.e2b."
# Where a session's snapshots keep their copies of the workdir (engine/agent/snapshots.py): a
# top-level folder the listings leave out; it is lci's, not one of the user's files.
SNAPSHOT_DIR = ".lci-snapshots"


class Refused(Exception):
    status = "refused"


class Missing(Refused):
    status = "missing"


def split(path: str, allow_root: bool = False) -> list[str]:
    """Components of a workdir-relative path; "" or "." is the workdir itself when allowed."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if "\x00" in path or ".." in parts or (not parts and not allow_root):
        raise Refused(f"path {path!r} does not name an entry inside the working directory")
    return parts


Owner = tuple[int, int] | None  # who made directories belong to (the host runs as root)


def open_dir(
    root: str, parts: list[str], create: bool = False, mode: int = 0o700, owner: Owner = None
) -> int:
    """The directory `parts` (made with its parents when `create`), opened without following any
    link on the way."""
    fd = os.open(root, _DIR)
    try:
        for part in parts:
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, mode, dir_fd=fd)
                    if owner:
                        os.chown(part, *owner, dir_fd=fd, follow_symlinks=False)
            try:
                child = os.open(part, _DIR, dir_fd=fd)
            except FileNotFoundError as exc:
                raise Missing(f"no directory {'/'.join(parts)!r} in the working directory") from exc
            except OSError as exc:
                raise Refused(f"{part!r} is not a plain directory") from exc
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def _name(lookup: object, number: int) -> str:
    try:
        return str(lookup(number)[0])  # type: ignore[operator]
    except (KeyError, OverflowError):
        return str(number)


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    return "symlink" if stat.S_ISLNK(mode) else "other"


def _metadata(parent: int, name: str) -> dict[str, str] | None:
    # Through the parent's fd: the entry itself is never followed (xattrs of a link are its own).
    where = f"/proc/self/fd/{parent}/{name}" if name else f"/proc/self/fd/{parent}"
    found: dict[str, str] = {}
    try:
        for attr in os.listxattr(where, follow_symlinks=False):
            if attr.startswith(METADATA_PREFIX):
                value = os.getxattr(where, attr, follow_symlinks=False)
                found[attr[len(METADATA_PREFIX) :]] = value.decode("utf-8", "replace")
    except OSError:
        return None
    return found or None


def describe(parent: int, name: str, rel: str, info: os.stat_result) -> dict[str, object]:
    """The entry `name` of the directory `parent` (or `parent` itself when `name` is "")."""
    target = None
    if stat.S_ISLNK(info.st_mode):
        with contextlib.suppress(OSError):
            target = os.readlink(name, dir_fd=parent)
    return {
        "name": rel.rsplit("/", 1)[-1],
        "path": rel,
        "type": _kind(info.st_mode),
        "size": info.st_size,
        "mode": stat.S_IMODE(info.st_mode),
        "permissions": stat.filemode(info.st_mode),
        "owner": _name(pwd.getpwuid, info.st_uid),
        "group": _name(grp.getgrgid, info.st_gid),
        "mtime": info.st_mtime,
        "mtime_ns": info.st_mtime_ns,
        "inode": info.st_ino,
        "target": target,
        "metadata": _metadata(parent, name) if not stat.S_ISLNK(info.st_mode) else None,
    }


def entry(root: str, path: str) -> dict[str, object]:
    """One entry, not followed if it is a link (Missing when there is none)."""
    parts = split(path, allow_root=True)
    if not parts:
        fd = os.open(root, _DIR)
        try:
            return describe(fd, "", "", os.fstat(fd))
        finally:
            os.close(fd)
    parent = open_dir(root, parts[:-1])
    try:
        try:
            info = os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError as exc:
            raise Missing(f"no file or directory {path!r} in the working directory") from exc
        return describe(parent, parts[-1], "/".join(parts), info)
    finally:
        os.close(parent)


def listing(root: str, path: str, depth: int, limit: int) -> list[dict[str, object]]:
    """Entries under the directory `path`, `depth` levels down (1: its children), at most
    `limit`, sorted by path. Links are listed, never entered."""
    base = split(path, allow_root=True)
    first = open_dir(root, base)  # Missing / Refused for the directory itself
    os.close(first)
    found: list[dict[str, object]] = []
    pending: list[list[str]] = [[]]
    depth = max(1, min(depth, MAX_DEPTH))
    while pending and len(found) < limit:
        inner = pending.pop()
        try:
            fd = open_dir(root, base + inner)
        except Refused:
            continue  # replaced meanwhile: not a directory any more
        try:
            with os.scandir(fd) as entries:
                for item in entries:
                    if item.name == SNAPSHOT_DIR and not base and not inner:
                        continue
                    info = item.stat(follow_symlinks=False)
                    rel = "/".join([*base, *inner, item.name])
                    found.append(describe(fd, item.name, rel, info))
                    if stat.S_ISDIR(info.st_mode) and len(inner) + 1 < depth:
                        pending.append([*inner, item.name])
        finally:
            os.close(fd)
    return sorted(found[:limit], key=lambda e: str(e["path"]))


def make_dir(root: str, path: str, mode: int = 0o700, owner: Owner = None) -> bool:
    """Make the directory `path` with its parents; False when it already exists (a directory),
    Refused when something else has the name."""
    parts = split(path)
    parent = open_dir(root, parts[:-1], create=True, mode=mode, owner=owner)
    try:
        try:
            os.mkdir(parts[-1], mode, dir_fd=parent)
            if owner:
                os.chown(parts[-1], *owner, dir_fd=parent, follow_symlinks=False)
        except FileExistsError:
            info = os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
            if not stat.S_ISDIR(info.st_mode):
                raise Refused(f"{path!r} exists and is not a directory") from None
            return False
        os.chmod(parts[-1], mode, dir_fd=parent, follow_symlinks=False)  # whatever the umask
        return True
    finally:
        os.close(parent)


def remove(root: str, path: str) -> None:
    """Remove a file, link (itself) or special file, or a directory with everything in it."""
    parts = split(path)
    parent = open_dir(root, parts[:-1])
    try:
        try:
            info = os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError as exc:
            raise Missing(f"no file or directory {path!r} in the working directory") from exc
        if stat.S_ISDIR(info.st_mode):
            _clear(parent, parts[-1])
            os.rmdir(parts[-1], dir_fd=parent)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(parts[-1], dir_fd=parent)
    finally:
        os.close(parent)


def _clear(parent: int, name: str) -> None:
    """Empty the directory `name` of `parent`, depth first, holding one fd per level (never
    climbing back through "..", which a concurrent rename could redirect)."""
    stack = [(os.open(name, _DIR, dir_fd=parent), "")]
    try:
        while stack:
            fd, _ = stack[-1]
            subdirectory = None
            with os.scandir(fd) as entries:
                for item in entries:
                    if item.is_dir(follow_symlinks=False):
                        subdirectory = subdirectory or item.name
                    else:
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(item.name, dir_fd=fd)
            if subdirectory is not None:
                if len(stack) >= MAX_REMOVE_DEPTH:
                    raise Refused(f"the tree is deeper than {MAX_REMOVE_DEPTH} levels")
                with contextlib.suppress(OSError):
                    os.chmod(subdirectory, 0o700, dir_fd=fd, follow_symlinks=False)
                stack.append((os.open(subdirectory, _DIR, dir_fd=fd), subdirectory))
                continue
            done, done_name = stack.pop()
            os.close(done)
            if stack:
                with contextlib.suppress(FileNotFoundError):
                    os.rmdir(done_name, dir_fd=stack[-1][0])
    finally:
        for fd, _ in stack:
            os.close(fd)


def move(root: str, source: str, destination: str, owner: Owner = None) -> dict[str, object]:
    """Rename `source` to `destination` (parents made), both inside the workdir; a link moves as
    itself. An existing file at the destination is replaced, as rename(2) does."""
    src, dst = split(source), split(destination)
    if dst[: len(src)] == src:
        raise Refused(f"cannot move {source!r} into itself")
    src_parent = open_dir(root, src[:-1])
    try:
        dst_parent = open_dir(root, dst[:-1], create=True, owner=owner)
        try:
            try:
                os.rename(src[-1], dst[-1], src_dir_fd=src_parent, dst_dir_fd=dst_parent)
            except FileNotFoundError as exc:
                raise Missing(f"no file or directory {source!r} in the working directory") from exc
            except OSError as exc:
                if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.EISDIR, errno.ENOTDIR):
                    raise Refused(
                        f"cannot move {source!r} to {destination!r}: {exc.strerror}"
                    ) from exc
                raise
            info = os.stat(dst[-1], dir_fd=dst_parent, follow_symlinks=False)
            return describe(dst_parent, dst[-1], "/".join(dst), info)
        finally:
            os.close(dst_parent)
    finally:
        os.close(src_parent)


def annotate(root: str, path: str, mode: int | None, metadata: dict[str, str] | None) -> None:
    """Set a regular file's permission bits and replace its `user.e2b.*` metadata (none given:
    the old metadata is removed, as a new upload has none)."""
    parts = split(path)
    parent = open_dir(root, parts[:-1])
    try:
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(parts[-1], flags, dir_fd=parent)
        except FileNotFoundError as exc:
            raise Missing(f"no file {path!r} in the working directory") from exc
        except OSError as exc:
            raise Refused(f"cannot open {path!r}: {exc.strerror}") from exc
    finally:
        os.close(parent)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise Refused(f"{path!r} is not a regular file")
        if mode is not None:
            os.fchmod(fd, mode & 0o777)
        _replace_metadata(fd, metadata or {})
    finally:
        os.close(fd)


def _replace_metadata(fd: int, metadata: dict[str, str]) -> None:
    try:
        old = [a for a in os.listxattr(fd) if a.startswith(METADATA_PREFIX)]
    except OSError:
        old = []  # no xattrs on this filesystem: nothing stale either
    for attr in old:
        with contextlib.suppress(OSError):
            os.removexattr(fd, attr)
    for key, value in metadata.items():
        try:
            os.setxattr(fd, METADATA_PREFIX + key.lower(), value.encode())
        except OSError as exc:
            raise Refused(f"cannot store metadata {key!r}: {exc.strerror}") from exc


OPS = ("stat", "ls", "mkdir", "remove", "move", "annotate")


def dispatch(root: str, op: str, path: str, request: dict[str, Any], owner: Owner = None) -> Any:
    """One operation by name, its arguments in `request` (as the file helper receives them)."""
    if op == "stat":
        return entry(root, path)
    if op == "ls":
        return listing(root, path, int(request["depth"]), int(request["limit"]))
    if op == "mkdir":
        return make_dir(root, path, int(request.get("mode", 0o700)), owner)
    if op == "remove":
        return remove(root, path)
    if op == "move":
        return move(root, path, str(request["to"]), owner)
    if op == "annotate":
        mode, metadata = request.get("mode"), request.get("metadata")
        return annotate(root, path, None if mode is None else int(mode), metadata)
    raise Refused(f"unknown operation {op!r}")
