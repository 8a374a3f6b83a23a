"""Tar streams between the engine and the Docker daemon, sanitised in both directions.

Files reach a session's volume as tar archives (the daemon's archive API) and come back the same
way. Whatever the sandbox left in its workdir is untrusted, so an archive read back must hold
exactly one regular file: no link, device, FIFO or sparse member, no absolute or `..` name (the
`tarfile.data_filter` rules), and no more than the caller's byte limit, which is checked on the
header, before more than one chunk of read-ahead. Archives are streamed, never held whole: an upload is its one
header, the caller's bytes, and the padding; a download stops at the limit.
"""

from __future__ import annotations

import tarfile
import time
from collections.abc import Iterable, Iterator

from engine.errors import FileAccessError

BLOCK = tarfile.BLOCKSIZE
CHUNK = 1 << 20


def file_archive(name: str, data: bytes, owner: tuple[int, int]) -> Iterator[bytes]:
    """A tar stream of one regular file `name` (a plain relative name) holding `data`, owned by
    `owner` with mode 0600; the bytes are not copied into the archive, only sliced."""
    member = tarfile.TarInfo(name)
    member.size, member.mode, member.mtime = len(data), 0o600, int(time.time())
    member.uid, member.gid = owner
    _sanitised(member)
    yield member.tobuf(format=tarfile.PAX_FORMAT)
    view = memoryview(data)
    for start in range(0, len(view), CHUNK):
        yield bytes(view[start : start + CHUNK])
    yield b"\0" * (-len(data) % BLOCK) + b"\0" * (2 * BLOCK)


class _ChunkReader:
    """A read-only file over an iterable of byte chunks, for tarfile's stream mode."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._current = b""
        self._offset = 0

    def read(self, size: int = -1) -> bytes:
        parts: list[bytes] = []
        wanted = size
        while wanted != 0:
            if self._offset >= len(self._current):
                chunk = next(self._chunks, None)
                if chunk is None:
                    break
                self._current, self._offset = chunk, 0
            end = len(self._current) if wanted < 0 else self._offset + wanted
            part = self._current[self._offset : end]
            self._offset += len(part)
            parts.append(part)
            if wanted > 0:
                wanted -= len(part)
        return b"".join(parts)


def read_single_file(chunks: Iterable[bytes], what: str, max_bytes: int) -> bytes:
    """The content of the one regular file in the tar stream `chunks`. FileAccessError when the
    stream holds anything else or more than `max_bytes` of it."""
    try:
        with tarfile.open(fileobj=_ChunkReader(chunks), mode="r|", bufsize=CHUNK) as archive:  # type: ignore[call-overload]
            member = archive.next()
            if member is None:
                raise FileAccessError(f"{what!r} could not be read")
            if not member.isreg() or member.issparse():
                raise FileAccessError(f"{what!r} is not a regular file")
            _sanitised(member)
            if member.size > max_bytes:
                raise FileAccessError(f"{what!r} is larger than {max_bytes} bytes")
            source = archive.extractfile(member)
            assert source is not None  # a regular member always has content
            data: bytes = source.read(member.size)
            if len(data) != member.size:
                raise FileAccessError(f"{what!r} was cut short while it was read")
            if archive.next() is not None:
                raise FileAccessError(f"{what!r} is not a single file")
            return data
    except tarfile.TarError as exc:
        raise FileAccessError(f"{what!r} could not be read: {exc}") from exc


def _sanitised(member: tarfile.TarInfo) -> None:
    """`tarfile.data_filter`'s verdict on a member, as a FileAccessError: absolute and `..` names,
    links leading outside, device files. A name the filter would have to change (a leading "/",
    say) is refused too, rather than quietly rewritten."""
    try:
        filtered = tarfile.data_filter(member, "/nonexistent-destination")
    except tarfile.FilterError as exc:
        raise FileAccessError(f"refused archive member {member.name!r}: {exc}") from exc
    if filtered.name != member.name or ".." in member.name.split("/"):
        raise FileAccessError(f"refused archive member {member.name!r}: not a plain relative name")
