"""The tar streams of the docker backend's file API: what comes back from the daemon is refused
unless it is one plain regular file within the byte limit, and uploads are one plain file."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator

import pytest

from engine.core.backends.docker.archive import CHUNK, file_archive, read_single_file
from engine.errors import FileAccessError


def archive(*members: tuple[tarfile.TarInfo, bytes | None], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=fmt) as out:
        for member, data in members:
            out.addfile(member, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def member(
    name: str, kind: bytes = tarfile.REGTYPE, size: int = 0, **extra: object
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size = kind, size
    for key, value in extra.items():
        setattr(info, key, value)
    return info


def chunks(data: bytes, size: int = 777) -> Iterator[bytes]:
    """The stream in odd-sized pieces, as the daemon's response may arrive."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_one_regular_file_is_read_back() -> None:
    data = bytes(range(256)) * 5000
    assert (
        read_single_file(chunks(archive((member("f", size=len(data)), data))), "f", 10**7) == data
    )


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (member("ln", tarfile.SYMTYPE, linkname="/etc/shadow"), "not a regular file"),
        (member("hard", tarfile.LNKTYPE, linkname="../../etc/shadow"), "not a regular file"),
        (member("dev", tarfile.CHRTYPE, devmajor=1, devminor=3), "not a regular file"),
        (member("fifo", tarfile.FIFOTYPE), "not a regular file"),
        (member("dir", tarfile.DIRTYPE), "not a regular file"),
        (member("/etc/passwd", size=1), "not a plain relative name"),
        (member("../../escape", size=1), "outside the destination"),
    ],
)
def test_anything_but_a_plain_file_is_refused(bad: tarfile.TarInfo, error: str) -> None:
    data = b"x" * bad.size if bad.isreg() else None
    with pytest.raises(FileAccessError, match=error):
        read_single_file(chunks(archive((bad, data))), "f", 1000)


def test_a_sparse_member_is_refused() -> None:
    # An old GNU sparse header: 8 GiB apparent size, no data, the way `tar -S` writes a hole.
    sparse = member("s", tarfile.GNUTYPE_SPARSE, size=0)
    raw = bytearray(archive((member("s", size=0), b""), fmt=tarfile.GNU_FORMAT))
    header = bytearray(sparse.tobuf(format=tarfile.GNU_FORMAT)[:512])
    header[483:495] = b"%011o\0" % (8 << 30)  # realsize
    header[148:156] = b" " * 8
    header[148:155] = b"%06o\0" % sum(header)
    raw[:512] = header
    with pytest.raises(FileAccessError, match="not a regular file"):
        read_single_file(chunks(bytes(raw)), "s", 1 << 40)


def test_the_limit_is_checked_before_the_content_is_read() -> None:
    header = member("big", size=1 << 30).tobuf(format=tarfile.PAX_FORMAT)
    taken: list[int] = []

    def counted() -> Iterator[bytes]:  # a gigabyte of content, were it all read
        yield header
        for _ in range(1 << 21):
            taken.append(512)
            yield b"x" * 512

    with pytest.raises(FileAccessError, match="larger than 1000 bytes"):
        read_single_file(counted(), "big", 1000)
    assert sum(taken) <= CHUNK  # one chunk of read-ahead, not the gigabyte


def test_more_than_one_member_or_a_cut_stream_is_refused() -> None:
    two = archive((member("a", size=1), b"a"), (member("b", size=1), b"b"))
    with pytest.raises(FileAccessError, match="not a single file"):
        read_single_file(chunks(two), "a", 10)
    cut = archive((member("a", size=5000), b"a" * 5000))[:2048]
    with pytest.raises(FileAccessError):
        read_single_file(chunks(cut), "a", 10_000)
    with pytest.raises(FileAccessError):
        read_single_file(iter([]), "a", 10)


def test_an_upload_is_one_plain_file_owned_by_the_sandbox_user() -> None:
    data = b"y" * (3 << 20)
    stream = b"".join(file_archive("name.bin", data, (1000, 1001)))
    with tarfile.open(fileobj=io.BytesIO(stream)) as back:
        [info] = back.getmembers()
        assert (info.name, info.isreg(), info.uid, info.gid, info.mode) == (
            "name.bin",
            True,
            1000,
            1001,
            0o600,
        )
        extracted = back.extractfile(info)
        assert extracted is not None and extracted.read() == data
    with pytest.raises(FileAccessError):
        list(file_archive("/abs", b"", (1000, 1000)))
