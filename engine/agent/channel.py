"""The agent's one channel to the host: frames out on a private descriptor, and the user's
stdout/stderr pipes pumped into `stream` frames on it, so output and displays keep their order."""

from __future__ import annotations

import os
import select
import threading
from typing import Any

from .protocol import encode_frame, write_all

_PUMP_CHUNK = 65536


class Channel:
    """Writes frames to the host, and pumps the cell's stdout/stderr pipes into `stream` frames."""

    def __init__(self, out_fd: int, pipes: dict[str, int] | None = None) -> None:
        self.out_fd = out_fd
        self.pipes = pipes or {}
        self._lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        frame = encode_frame(message)
        with self._lock:
            write_all(self.out_fd, frame)

    def start_pump(self) -> None:
        self._poller = select.poll()
        for fd in self.pipes.values():
            # Non-blocking before any drain(): a blocking read there would hang a cell.
            os.set_blocking(fd, False)
            self._poller.register(fd, select.POLLIN)
        if self.pipes:
            threading.Thread(target=self._pump_forever, name="lci-pump", daemon=True).start()

    def drain(self) -> None:
        """Forward everything already written to the stdout/stderr pipes (called before `done`, so
        output lands before the frame that ends the cell). One poll finds out whether there is any:
        this runs after every cell, and most cells print nothing."""
        if not self.pipes or not self._poller.poll(0):
            return
        with self._lock:
            for name, fd in self.pipes.items():
                self._forward_available(name, fd)

    def _forward_available(self, name: str, fd: int) -> None:
        while True:
            try:
                data = os.read(fd, _PUMP_CHUNK)
            except BlockingIOError:
                return
            if not data:
                return
            write_all(
                self.out_fd,
                encode_frame({"type": "stream", "name": name, "data": data.decode("latin-1")}),
            )

    def _pump_forever(self) -> None:
        import selectors

        selector = selectors.DefaultSelector()
        for name, fd in self.pipes.items():
            selector.register(fd, selectors.EVENT_READ, name)
        while True:
            for key, _ in selector.select():
                with self._lock:
                    self._forward_available(key.data, key.fd)


class SilentChannel(Channel):
    """Where a forked child of user code writes: nowhere (only the agent speaks the protocol)."""

    def __init__(self) -> None:
        super().__init__(-1)

    def send(self, message: dict[str, Any]) -> None:
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
    return requests_fd, Channel(frames_fd, pipes)
