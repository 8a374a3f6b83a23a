"""The agent's parent: outlives the kernel, so output the kernel never got to forward is not lost.

User code prints into pipes that the kernel's pump thread turns into `stream` frames. When the kernel
dies (a segfault, `os._exit`, a signal) or is stopped (SIGSTOP), whatever was still in those pipes
would die with it: that is exactly the output that tells how far the code got. So the agent forks
once at start-up: the child becomes the kernel, the parent keeps a copy of the pipes' read ends and
the frame channel and waits. When the kernel stops or exits, the parent forwards what is left in the
pipes as `stream` frames and exits with the kernel's status (signals as 128 + number). It forwards
SIGINT and SIGTERM to the kernel, so interrupts reach the cell as before.

The parent must not run any user code and holds no request channel, so it can never answer for the
kernel; it only ever writes `stream` frames, after the kernel can no longer write.
"""

from __future__ import annotations

import contextlib
import os
import signal
from typing import Any

from .protocol import encode_frame, write_all

_RESCUE_LIMIT = 4 << 20  # what a stray writer could keep adding after the kernel died
_PR_SET_PDEATHSIG = 1


def fork_kernel(channel: Any, requests_fd: int) -> None:
    """Fork; return in the child (the kernel). The parent serves as the relay and never returns."""
    parent = os.getpid()
    child = os.fork()
    if child == 0:
        _die_with_parent(parent)
        return
    os.close(requests_fd)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # user code's pipes: the relay must not keep their write ends open
        os.dup2(devnull, fd)
    os.close(devnull)
    _serve(child, channel)


def _die_with_parent(parent: int) -> None:
    """If the relay is killed, the kernel must not live on unseen (without namespaces nothing
    else would take it down)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # it died before the death signal was armed
        os._exit(1)


def _serve(child: int, channel: Any) -> None:
    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    while True:
        try:
            _, status = os.waitpid(child, os.WUNTRACED)
        except ChildProcessError:
            os._exit(1)
        _rescue(channel)
        if os.WIFSTOPPED(status):
            continue  # stopped: its output so far is out; the host decides what happens next
        code = os.waitstatus_to_exitcode(status)
        os._exit(code if code >= 0 else 128 - code)


def _rescue(channel: Any) -> None:
    left = _RESCUE_LIMIT
    for name, fd in channel.pipes.items():
        while left > 0:
            try:
                data = os.read(fd, min(65536, left))
            except (BlockingIOError, OSError):
                break
            if not data:
                break
            left -= len(data)
            with contextlib.suppress(OSError):
                frame = {"type": "stream", "name": name, "data": data.decode("latin-1")}
                write_all(channel.out_fd, encode_frame(frame))
