"""Closing what a failed call left open: a library that creates a socket and raises before handing
it over leaves it referenced from the failure's traceback only, open until the garbage collector
finds it (and warns about it in whatever code runs then)."""

from __future__ import annotations

import socket
import traceback
from types import CodeType


def close_leaked_sockets(
    exc: BaseException | None, where: CodeType, seen: set[int] | None = None
) -> None:
    """Close the sockets held by the frames of `where` in the tracebacks of `exc` and of the
    exceptions it was raised from or while handling. Such a frame raised: whatever socket it
    made was never handed over."""
    seen = set() if seen is None else seen
    if exc is None or id(exc) in seen:
        return
    seen.add(id(exc))
    for frame, _ in traceback.walk_tb(exc.__traceback__):
        if frame.f_code is where:
            for value in frame.f_locals.values():
                if isinstance(value, socket.socket):
                    value.close()
    close_leaked_sockets(exc.__cause__, where, seen)
    close_leaked_sockets(exc.__context__, where, seen)
