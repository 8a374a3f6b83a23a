"""Files in pieces, on top of a session's whole-file `write_file` and `read_file`.

The server streams uploads and downloads through these: a session on a cluster node passes the
pieces on as they come (no replica holds a whole file); a local session joins them, as its sandbox
takes a file whole.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

MAX_FILE_BYTES = 256 << 20


class ChunkedFiles:
    async def write_file(self, path: str, data: bytes) -> None:
        raise NotImplementedError

    async def read_file(self, path: str, max_bytes: int = MAX_FILE_BYTES) -> bytes:
        raise NotImplementedError

    async def write_file_chunks(self, path: str, chunks: AsyncIterator[bytes]) -> int:
        """Write a file given in pieces; returns its size."""
        data = b"".join([chunk async for chunk in chunks])
        await self.write_file(path, data)
        return len(data)

    async def read_file_chunks(
        self, path: str, max_bytes: int = MAX_FILE_BYTES
    ) -> AsyncIterator[bytes]:
        """A file in pieces (here one); errors are raised before the first piece."""
        yield await self.read_file(path, max_bytes)
