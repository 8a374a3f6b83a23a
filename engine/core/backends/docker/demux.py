"""Docker's stream framing of an attach or exec connection without a TTY, read on the event loop:
a stream id (1 stdout, 2 stderr), three zero bytes, the payload's length (big-endian), the payload."""

from __future__ import annotations

import asyncio
import struct

HEADER = struct.Struct(">BxxxI")
_STDOUT, _STDERR = 1, 2


class StreamDemux(asyncio.Protocol):
    """Calls `stdout` and `stderr` with each payload, in order; subclasses say what they do."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        while len(buffer) >= HEADER.size:
            stream, size = HEADER.unpack_from(buffer)
            end = HEADER.size + size
            if len(buffer) < end:
                return
            payload = bytes(buffer[HEADER.size : end])
            del buffer[:end]
            if stream == _STDOUT:
                self.stdout(payload)
            elif stream == _STDERR:
                self.stderr(payload)

    def eof_received(self) -> bool:
        return False  # close our side too: the output has ended

    def stdout(self, payload: bytes) -> None:
        raise NotImplementedError

    def stderr(self, payload: bytes) -> None:
        raise NotImplementedError
