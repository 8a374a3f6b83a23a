"""The agent's one channel to the host: frames out on a private descriptor, and the user's
stdout/stderr pipes pumped into `stream` frames on it, so output and displays keep their order.

Processes that user code forks without exec (os.fork, multiprocessing) print into pipes of their own,
one pair per cell: what they print while their cell runs is that cell's output, and what they print
after it ended is dropped, never shown as a later cell's output. They also lose every protocol
descriptor, so only the agent's own process can ever write a frame or read a request."""

from __future__ import annotations

import contextlib
import os
import select
import threading
from typing import Any

from .protocol import encode_frame, write_all

_PUMP_CHUNK = 65536


class Channel:
    """Writes frames to the host, and pumps the cell's stdout/stderr pipes into `stream` frames."""

    def __init__(
        self, out_fd: int, pipes: dict[str, int] | None = None, requests_fd: int = -1
    ) -> None:
        self.out_fd = out_fd
        self.requests_fd = requests_fd
        self.pipes = pipes or {}
        self.current: str | None = None  # the id of the cell running now, if any
        # read end -> (stream name, id of the cell whose children write into it)
        self._child_reads: dict[int, tuple[str, str | None]] = {}
        self._child_writes: dict[str, int] = {}  # this cell's write ends, for the next fork
        self._lock = threading.Lock()
        self._selector: Any = None
        self.pump_ident: int | None = None
        self.handover_fd = -1  # where a kernel tells the relay who replaces it (see relay)

    def send(self, message: dict[str, Any]) -> None:
        self.send_encoded(encode_frame(message))

    def send_encoded(self, frame: bytes) -> None:
        with self._lock:
            write_all(self.out_fd, frame)

    def start_pump(self) -> None:
        self._poller = select.poll()
        for fd in self.pipes.values():
            # Non-blocking before any drain(): a blocking read there would hang a cell.
            os.set_blocking(fd, False)
            self._poller.register(fd, select.POLLIN)
        if self.pipes:
            import selectors

            self._selector = selectors.DefaultSelector()
            for name, fd in self.pipes.items():
                self._selector.register(fd, selectors.EVENT_READ, name)
            pump = threading.Thread(target=self._pump_forever, name="lci-pump", daemon=True)
            pump.start()
            self.pump_ident = pump.ident

    def hold(self) -> threading.Lock:
        """Forward the output so far, then take the channel's lock (the pump stops forwarding)
        and return it: the caller forks, or hands the channel over, and releases it."""
        self.drain()
        self._lock.acquire()
        return self._lock

    def restart_pump(self) -> None:
        """In a kernel made by forking a snapshot (threads do not survive a fork): a new pump
        over the same pipes; the old kernel's pipes for forked children are not this one's."""
        with contextlib.suppress(Exception):
            self._selector.close()
        for fd in (*self._child_reads, *self._child_writes.values()):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._child_reads, self._child_writes = {}, {}
        self._selector = None
        self._lock = threading.Lock()
        self.start_pump()

    def drain(self) -> None:
        """Forward everything already written to the stdout/stderr pipes (called before `done`, so
        output lands before the frame that ends the cell). One poll finds out whether there is any:
        this runs after every cell, and most cells print nothing."""
        if not self.pipes or not self._poller.poll(0):
            return
        with self._lock:
            for name, fd in self.pipes.items():
                self._forward_available(name, fd)

    def _forward_available(self, name: str, fd: int, keep: bool = True) -> bool:
        """Forward (or, with keep=False, discard) what `fd` holds; False at end of file."""
        while True:
            try:
                data = os.read(fd, _PUMP_CHUNK)
            except BlockingIOError:
                return True
            if not data:
                return False
            if keep:
                frame = {"type": "stream", "name": name, "data": data.decode("latin-1")}
                write_all(self.out_fd, encode_frame(frame))

    def _pump_forever(self) -> None:
        while True:
            for key, _ in self._selector.select():
                with self._lock:
                    self._pump(key.fd, key.data)

    def _pump(self, fd: int, name: str) -> None:
        owner = self._child_reads.get(fd)
        if owner is None:
            # Between cells only threads that outlived their cell write: nobody's output.
            self._forward_available(name, fd, keep=self.current is not None)
            return
        # A forked child's pipe: its output belongs to the cell that forked it, while that runs.
        if not self._forward_available(name, fd, keep=owner[1] == self.current):
            self._selector.unregister(fd)
            del self._child_reads[fd]
            os.close(fd)

    def begin_cell(self, exec_id: str) -> None:
        """A cell starts: what is in the pipes now was written after the last cell ended (by
        threads it left running) and is dropped; from here on output is this cell's."""
        with self._lock:
            for name, fd in self.pipes.items():
                self._forward_available(name, fd, keep=False)
            self.current = exec_id

    # -- forked children -------------------------------------------------------------------------
    def before_fork(self) -> None:
        """In the agent, before user code forks: make sure this cell has pipes for its children."""
        if self._selector is None or self._child_writes:
            return
        import selectors

        with self._lock:
            for name in ("stdout", "stderr"):
                read_end, write_end = os.pipe()
                os.set_blocking(read_end, False)
                os.set_inheritable(read_end, False)
                self._child_reads[read_end] = (name, self.current)
                self._child_writes[name] = write_end
                self._selector.register(read_end, selectors.EVENT_READ, name)

    def in_forked_child(self) -> None:
        """In a child forked by user code: print into the cell's child pipes; hold no protocol
        descriptor and no read end."""
        for target, name in ((1, "stdout"), (2, "stderr")):
            if name in self._child_writes:
                os.dup2(self._child_writes[name], target)
        for fd in (
            self.out_fd,
            self.requests_fd,
            self.handover_fd,
            *self.pipes.values(),
            *self._child_reads,
            *self._child_writes.values(),
        ):
            if fd > 2:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.pipes, self._child_reads, self._child_writes = {}, {}, {}
        self.out_fd = self.requests_fd = self.handover_fd = -1

    def end_cell(self) -> None:
        """The cell is over: forward what its children printed so far, then let go of the write
        ends, so the pipes end when the children do."""
        with self._lock:
            for fd, (name, owner) in list(self._child_reads.items()):
                if owner == self.current and not self._forward_available(name, fd):
                    self._selector.unregister(fd)
                    del self._child_reads[fd]
                    os.close(fd)
            for fd in self._child_writes.values():
                os.close(fd)
            self._child_writes = {}
            self.current = None


class SilentChannel(Channel):
    """Where a forked child of user code writes: nowhere (only the agent speaks the protocol)."""

    def __init__(self) -> None:
        super().__init__(-1)

    def send(self, message: dict[str, Any]) -> None:
        pass

    def send_encoded(self, frame: bytes) -> None:
        pass

    def drain(self) -> None:
        pass


def setup_channel(options: dict[str, Any]) -> tuple[int, Channel]:
    """Move the protocol to private descriptors; give user code /dev/null as stdin and pipes as
    stdout and stderr, which the channel pumps into `stream` frames."""
    requests_fd = os.dup(options["requests_fd"])
    frames_fd = os.dup(options["frames_fd"])
    for fd in {options["requests_fd"], options["frames_fd"]} - {0, 1, 2}:
        os.close(fd)
    pipes = {}
    for name, target in (("stdout", 1), ("stderr", 2)):
        read_end, write_end = os.pipe()
        os.dup2(write_end, target)
        os.close(write_end)
        pipes[name] = read_end
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    for fd in (requests_fd, frames_fd, *pipes.values()):
        os.set_inheritable(fd, False)  # user subprocesses must not hold the protocol channel
        if fd in pipes.values():
            os.set_blocking(fd, False)
    return requests_fd, Channel(frames_fd, pipes, requests_fd)


def parse_args(argv: list[str]) -> dict[str, Any]:
    """`--requests-fd=N --frames-fd=M` (default: stdin and stdout), `--preload=MODULE,...`."""
    options: dict[str, Any] = {"requests_fd": 0, "frames_fd": 1, "preload": []}
    for arg in argv:
        key, _, value = arg.lstrip("-").partition("=")
        if key in ("requests-fd", "frames-fd"):
            options[key.replace("-", "_")] = int(value)
        elif key == "preload":
            options["preload"] = [name for name in value.split(",") if name]
    return options
