"""Agent protocol, version 1: length-prefixed JSON frames.

A frame is a 4-byte big-endian length followed by that many bytes of UTF-8 JSON holding one object with
a "type" key. Length prefixes (rather than newline-delimited text) let the decoder reject an oversized
frame before buffering it and make a frame boundary impossible to forge with clever JSON.

Host -> agent:  execute {id, code, cpu_s, max_display_bytes}   shutdown {}
Agent -> host:  hello {protocol, pid, python}
                stream {name, data}          (user code's stdout/stderr, multiplexed by the agent
                                              onto the frame channel; data is latin-1 text so
                                              bytes round-trip exactly)
                display {id, data, metadata}
                done {id, status, result, error}
"""

from __future__ import annotations

import json
import os
import re
import struct
from typing import Any

PROTOCOL_VERSION = 1
_HEADER = struct.Struct(">I")
DEFAULT_MAX_FRAME = 64 << 20
# Frames have a fixed, shallow shape: a few dozen strings, and once those are taken out, a few
# hundred bytes of structure. A big frame that is not like that is built to make the parser allocate
# millions of objects, or recurse until it fails, and is refused before it is parsed.
MAX_STRINGS = 512
MAX_SKELETON = 4096
_SMALL_FRAME = 1 << 16
_UNESCAPED_STRING = re.compile(rb'"[^"]*"')


class FrameError(ValueError):
    """The byte stream is not a valid sequence of frames."""


def encode_frame(message: dict[str, Any]) -> bytes:
    # ensure_ascii keeps lone surrogates and control characters representable in any decoder.
    body = json.dumps(message, ensure_ascii=True, separators=(",", ":")).encode("ascii")
    return _HEADER.pack(len(body)) + body


class FrameDecoder:
    """Incremental decoder: feed it chunks split anywhere, get whole frames back."""

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self._buffer = bytearray()
        self._max_frame = max_frame

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        return [parse_frame(body) for body in self.feed_raw(data)]

    def feed_raw(self, data: bytes) -> list[bytes]:
        """Like `feed`, but the frames' bodies are returned unparsed (to parse them elsewhere)."""
        self._buffer += data
        frames: list[bytes] = []
        while len(self._buffer) >= _HEADER.size:
            (length,) = _HEADER.unpack_from(self._buffer)
            if length > self._max_frame:
                raise FrameError(
                    f"frame of {length} bytes exceeds the {self._max_frame} byte limit"
                )
            end = _HEADER.size + length
            if len(self._buffer) < end:
                break
            body = bytes(self._buffer[_HEADER.size : end])
            del self._buffer[:end]
            frames.append(body)
        return frames

    @property
    def pending(self) -> int:
        return len(self._buffer)


def parse_frame(body: bytes) -> dict[str, Any]:
    if len(body) > _SMALL_FRAME:
        _check_shape(body)
    try:
        message = json.loads(body)
    except RecursionError:
        raise FrameError("frame is nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise FrameError(f"frame is not valid JSON: {exc}") from exc
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise FrameError("frame is not an object with a string 'type'")
    return message


def _check_shape(body: bytes) -> None:
    """Refuse a frame with too many strings or too much structure, at C speed: with escaped
    backslashes and quotes removed, every string is a plain run between two quotes."""
    plain = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    strings = plain.count(b'"') // 2
    if strings > MAX_STRINGS:
        raise FrameError(f"frame has {strings} strings")
    skeleton = len(_UNESCAPED_STRING.sub(b"", plain))
    if skeleton > MAX_SKELETON:
        raise FrameError(f"frame has {skeleton} bytes of structure outside its strings")


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
