"""The cell's standard streams: repaired before every cell whatever user code did to them, and kept
free of what threads of earlier cells print.

A thread a cell left running (a timed-out loop, a forgotten worker) still prints through
sys.stdout while later cells run. Those writes are dropped rather than shown as the new cell's
output: while such threads exist, sys.stdout and sys.stderr are thin wrappers that ask which
thread is writing. Without them (the usual case) the streams are the plain objects."""

from __future__ import annotations

import os
import sys
import threading
from typing import Any


def _fd_identity(fd: int) -> tuple[int, int] | None:
    try:
        info = os.fstat(fd)
    except OSError:
        return None
    return info.st_dev, info.st_ino


class _CellStream:
    """A standard stream that drops writes from the threads of earlier cells."""

    def __init__(self, inner: Any, stale: frozenset[int]) -> None:
        self._lci_inner = inner
        self._lci_stale = stale

    def write(self, text: str) -> int:
        if threading.get_ident() in self._lci_stale:
            return len(text)
        return int(self._lci_inner.write(text))

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._lci_inner, name)


def _usable(stream: Any) -> bool:
    return stream is not None and not getattr(stream, "closed", True) and hasattr(stream, "write")


class StdStreams:
    def __init__(self) -> None:
        # Private copies of the cell's stdout/stderr descriptors, to put back if user code closes
        # or replaces them.
        self._fds = {fd: os.dup(fd) for fd in (1, 2)}
        self._ids = {fd: _fd_identity(fd) for fd in (1, 2)}
        self._own_threads: set[int] = {threading.get_ident()}
        # The stream objects cells print through: one a cell replaced (`sys.stdout =
        # io.StringIO()`) is put back before the next, or that cell would swallow every later one's
        # output.
        self._streams: dict[str, Any] = {"stdout": sys.stdout, "stderr": sys.stderr}

    def own_thread(self, ident: int | None) -> None:
        if ident is not None:
            self._own_threads.add(ident)

    def repair(self) -> None:
        """Put back working descriptors and stream objects, unwrapping our own wrappers."""
        for fd, saved in self._fds.items():
            if _fd_identity(fd) != self._ids[fd]:
                os.dup2(saved, fd)
        for name in ("stdout", "stderr"):
            stream = getattr(sys, name)
            if stream is self._streams[name] and not stream.closed:
                continue  # every cell: nothing to repair
            if isinstance(stream, _CellStream):
                stream = stream._lci_inner
                setattr(sys, name, stream)
            own = self._streams[name]
            if not _usable(own):
                own = getattr(sys, f"__{name}__")
                if not _usable(own):
                    own = open(  # noqa: SIM115 - lives as long as the process
                        1 if name == "stdout" else 2,
                        "w",
                        closefd=False,
                        buffering=1,
                        encoding="utf-8",
                        errors="backslashreplace",
                    )
                    setattr(sys, f"__{name}__", own)
                self._streams[name] = own
            if stream is not own:
                setattr(sys, name, own)

    def start_cell(self) -> None:
        """Repair the streams, and wrap them while threads of earlier cells are alive."""
        self.repair()
        stale = frozenset(
            t.ident
            for t in threading.enumerate()
            if t.ident is not None and t.ident not in self._own_threads
        )
        if stale:
            sys.stdout = _CellStream(sys.stdout, stale)
            sys.stderr = _CellStream(sys.stderr, stale)
