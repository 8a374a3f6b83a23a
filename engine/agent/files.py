"""The file helper: a session's files, served from inside the container that holds its workdir
volume, as the sandbox user. The docker backend starts it with `docker exec` in the session's
keeper container and keeps it running, so a file operation costs one round trip on an open
connection (no process start, no copy through the daemon's disk).

Requests arrive on stdin, one at a time: a JSON line, then a chunked payload. The reply on stdout is
a chunked payload, then a JSON trailer line. A chunk is a 4-byte big-endian length and that many
bytes; a zero length ends the payload.

    {"op": "write", "path": P, "max": N}   payload: a tar of one regular file -> written to P
    {"op": "fetch", "path": P, "max": N}   reply: a tar of the one regular file P
    {"op": "list", "limit": N}             reply: JSON [[path, size, mtime], ...] of regular files
    {"op": "delete", "path": P}            unlink the regular file P
    {"op": "stat", "path": P}              reply: JSON entry (see `tree.py`)
    {"op": "ls", "path": P, "depth": D, "limit": N}   reply: JSON [entry, ...]
    {"op": "mkdir", "path": P, "mode": M}  reply: JSON true (made) or false (existed)
    {"op": "remove", "path": P}            a file, link or whole directory
    {"op": "move", "path": P, "to": Q}     reply: JSON entry of Q
    {"op": "annotate", "path": P, "mode": M, "metadata": {...}}   a file's mode and metadata
    trailer: {"ok": true} or {"ok": false, "status": "refused" | "missing" | "full", "error": ...}

Every walk is fd-relative with O_NOFOLLOW: a symlink is refused, never followed, a FIFO or device is
never opened for reading, and sizes are bounded. Running as the sandbox user, it reaches nothing
the user's own code could not. Tar members are checked both ways: one regular file, no link,
device or sparse member, nothing beyond the limit.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import struct
import sys
import tarfile
from collections.abc import Callable
from typing import IO

from . import tree
from .tree import Missing, Refused

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_LENGTH = struct.Struct(">I")
CHUNK = 1 << 20
MAX_DEPTH = 32


class Full(Refused):
    status = "full"


class ChunkReader:
    """The request's payload as a file (for tarfile's stream mode)."""

    def __init__(self, source: IO[bytes]) -> None:
        self._source = source
        self._left = 0
        self._done = False

    def read(self, size: int = -1) -> bytes:
        parts = []
        while not self._done and (size < 0 or size > 0):
            if not self._left:
                header = self._source.read(_LENGTH.size)
                if len(header) < _LENGTH.size:
                    raise EOFError("the request ended inside its payload")
                self._left = _LENGTH.unpack(header)[0]
                self._done = self._left == 0
                continue
            want = self._left if size < 0 else min(size, self._left)
            data = self._source.read(want)
            if not data:
                raise EOFError("the request ended inside its payload")
            parts.append(data)
            self._left -= len(data)
            size = size - len(data) if size > 0 else size
        return b"".join(parts)

    def drain(self) -> None:
        while not self._done:
            self.read(CHUNK)


class ChunkWriter:
    """The reply's payload as a file: every write becomes one chunk."""

    def __init__(self, sink: IO[bytes]) -> None:
        self._sink = sink

    def write(self, data: bytes) -> int:
        if data:
            self._sink.write(_LENGTH.pack(len(data)) + bytes(data))
        return len(data)

    def end(self) -> None:
        self._sink.write(_LENGTH.pack(0))


def _parts(path: str) -> list[str]:
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts or ".." in parts or "\x00" in path:
        raise Refused(f"path {path!r} does not name a file inside the working directory")
    return parts


def _open_parent(root: str, parts: list[str], create: bool) -> int:
    return tree.open_dir(root, parts[:-1], create)


def _single_member(archive: tarfile.TarFile, what: str, max_bytes: int) -> tarfile.TarInfo:
    member = archive.next()
    if member is None or not member.isreg() or member.issparse():
        raise Refused(f"{what!r}: the upload is not one regular file")
    if member.name != "file" or member.size > max_bytes:
        raise Refused(f"{what!r}: the upload is malformed or too large")
    return member


def write(root: str, path: str, payload: ChunkReader, max_bytes: int) -> None:
    parts = _parts(path)
    with tarfile.open(fileobj=payload, mode="r|", bufsize=CHUNK) as archive:  # type: ignore[call-overload]
        member = _single_member(archive, path, max_bytes)
        source = archive.extractfile(member)
        parent = _open_parent(root, parts, create=True)
        try:
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISDIR(os.lstat(parts[-1], dir_fd=parent).st_mode):
                    raise Refused(f"cannot write {path!r}: it is a directory")
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
            try:
                fd = os.open(parts[-1], flags | os.O_NONBLOCK, 0o600, dir_fd=parent)
            except OSError as exc:
                raise Refused(f"cannot write {path!r}: {exc.strerror}") from exc
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    raise Refused(f"{path!r} is not a regular file")
                _copy(source, fd, path, lambda: os.unlink(parts[-1], dir_fd=parent))
            finally:
                os.close(fd)
        finally:
            os.close(parent)
        if archive.next() is not None:
            raise Refused(f"{path!r}: the upload is not one regular file")


def _copy(source: IO[bytes] | None, fd: int, path: str, discard: Callable[[], None]) -> None:
    try:
        while source is not None and (chunk := source.read(CHUNK)):
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view) :]
    except OSError as exc:
        # A half-written file would only hold on to the space that ran out.
        with contextlib.suppress(OSError):
            discard()
        if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            raise Full(f"cannot write {path!r}: {exc.strerror}") from exc
        raise Refused(f"cannot write {path!r}: {exc.strerror}") from exc


def fetch(root: str, path: str, max_bytes: int, out: ChunkWriter) -> None:
    parts = _parts(path)
    parent = _open_parent(root, parts, create=False)
    try:
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(parts[-1], flags, dir_fd=parent)
        except FileNotFoundError as exc:
            raise Missing(f"no file {path!r} in the working directory") from exc
        except OSError as exc:
            raise Refused(f"cannot read {path!r}: {exc.strerror}") from exc
    finally:
        os.close(parent)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_size > max_bytes:
        os.close(fd)
        if not stat.S_ISREG(info.st_mode):
            raise Refused(f"{path!r} is not a regular file")
        raise Refused(f"{path!r} is larger than {max_bytes} bytes")
    with os.fdopen(fd, "rb") as source:
        member = tarfile.TarInfo("file")
        member.size, member.mtime, member.mode = info.st_size, int(info.st_mtime), 0o600
        # The size is fixed in the header: a file that shrinks meanwhile makes tarfile fail,
        # and the engine then sees a truncated archive and the error.
        # Whole chunks in and out: tarfile's stream buffer grows by concatenation, so small
        # copies into a large buffer would cost a copy of the buffer each.
        with tarfile.open(  # type: ignore[call-overload]
            fileobj=out, mode="w|", format=tarfile.PAX_FORMAT, bufsize=CHUNK, copybufsize=CHUNK
        ) as archive:
            archive.addfile(member, source)


def delete(root: str, path: str) -> None:
    """Unlink one regular file (a symlink or directory of that name is refused, not followed)."""
    parts = _parts(path)
    parent = _open_parent(root, parts, create=False)
    try:
        try:
            info = os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError as exc:
            raise Missing(f"no file {path!r} in the working directory") from exc
        if not stat.S_ISREG(info.st_mode):
            raise Refused(f"{path!r} is not a regular file")
        with contextlib.suppress(FileNotFoundError):  # gone meanwhile: deleted all the same
            os.unlink(parts[-1], dir_fd=parent)
    finally:
        os.close(parent)


def list_files(root: str, limit: int) -> list[list[object]]:
    found: list[list[object]] = []
    pending: list[list[str]] = [[]]
    while pending and len(found) < limit:
        parts = pending.pop()
        try:
            fd = os.open(root, _DIR)
            for part in parts:
                inner = os.open(part, _DIR, dir_fd=fd)
                os.close(fd)
                fd = inner
        except OSError:
            continue
        try:
            with os.scandir(fd) as entries:
                for entry in entries:
                    if entry.name == tree.SNAPSHOT_DIR and not parts:
                        continue
                    info = entry.stat(follow_symlinks=False)
                    if stat.S_ISREG(info.st_mode):
                        found.append(["/".join([*parts, entry.name]), info.st_size, info.st_mtime])
                    elif stat.S_ISDIR(info.st_mode) and len(parts) < MAX_DEPTH:
                        pending.append([*parts, entry.name])
        finally:
            os.close(fd)
    return found[:limit]


def handle(root: str, request: dict[str, object], payload: ChunkReader, out: ChunkWriter) -> None:
    op, path = request.get("op"), str(request.get("path", ""))
    if op == "write":
        write(root, path, payload, int(request["max"]))  # type: ignore[call-overload]
    elif op == "fetch":
        fetch(root, path, int(request["max"]), out)  # type: ignore[call-overload]
    elif op == "delete":
        delete(root, path)
    elif op == "list":
        out.write(json.dumps(list_files(root, int(request["limit"]))).encode())  # type: ignore[call-overload]
    elif op in tree.OPS:
        out.write(json.dumps(tree.dispatch(root, str(op), path, request)).encode())
    else:
        raise Refused(f"unknown operation {op!r}")


def serve(root: str, source: IO[bytes], sink: IO[bytes]) -> None:
    while line := source.readline(1 << 16):
        payload, out = ChunkReader(source), ChunkWriter(sink)
        try:
            handle(root, json.loads(line), payload, out)
            trailer: dict[str, object] = {"ok": True}
        except Refused as exc:
            trailer = {"ok": False, "status": exc.status, "error": str(exc)}
        except (OSError, ValueError, KeyError, tarfile.TarError) as exc:
            trailer = {"ok": False, "status": "refused", "error": f"file operation failed: {exc}"}
        # The rest of the request is read before the reply, whatever happened: the engine
        # sends it whole before it reads.
        payload.drain()
        out.end()
        sink.write(json.dumps(trailer).encode() + b"\n")
        sink.flush()


def main() -> None:
    serve(sys.argv[1], sys.stdin.buffer, sys.stdout.buffer)
