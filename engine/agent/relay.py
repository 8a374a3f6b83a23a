"""The agent's parent: outlives the kernel, so output the kernel never got to forward is not lost.

User code prints into pipes that the kernel's pump thread turns into `stream` frames. When the kernel
dies (a segfault, `os._exit`, a signal) or is stopped (SIGSTOP), whatever was still in those pipes
would die with it: that is exactly the output that tells how far the code got. So the agent forks
once at start-up: the child becomes the kernel, the parent keeps a copy of the pipes' read ends and
the frame channel and waits. When the kernel stops or exits, the parent forwards what is left in the
pipes as `stream` frames and exits with the kernel's status (signals as 128 + number). It forwards
SIGINT and SIGTERM to the kernel, so interrupts reach the cell as before.

A snapshot of the kernel (engine/agent/snapshots.py) becomes the kernel by a handover: the old
kernel writes the new one's pid to a pipe only the relay reads and exits with a status of its own;
the relay, a child subreaper, has adopted the new kernel in that exit and follows it from then on.

The parent must not run any user code and holds no request channel, so it can never answer for the
kernel; it only ever writes `stream` frames, after the kernel can no longer write. Where the sandbox
runs under a syscall filter, the kernel adds one more that keeps user code from signalling the relay
(by pid, by its process group, or with kill(-1)): killing its own parent would otherwise take the
session down with it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import struct
from typing import Any

from .protocol import encode_frame, write_all

_RESCUE_LIMIT = 4 << 20  # what a stray writer could keep adding after the kernel died
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_HANDOVER_EXIT = 86  # snapshots.HANDOVER_EXIT: the kernel handed the channel over and exited


def fork_kernel(channel: Any, requests_fd: int) -> None:
    """Fork; return in the child (the kernel). The parent serves as the relay and never returns.
    A sandbox with a very small memory limit goes without (LCI_AGENT_RELAY=0, set by the host)."""
    if os.environ.get("LCI_AGENT_RELAY") == "0":
        return
    parent = os.getpid()
    with contextlib.suppress(Exception):
        _guard_relay(parent)  # installed here, inherited by the kernel: ctypes stays shared
    handover_read, handover_write = os.pipe()
    with contextlib.suppress(Exception):
        # Before the fork: the kernel may hand over before this process is scheduled again.
        _become_subreaper()
    child = os.fork()
    if child == 0:
        _die_with_parent(parent)
        os.close(handover_read)
        channel.handover_fd = handover_write
        return
    os.close(handover_write)
    os.set_blocking(handover_read, False)
    os.close(requests_fd)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # user code's pipes: the relay must not keep their write ends open
        os.dup2(devnull, fd)
    os.close(devnull)
    _serve(child, channel, handover_read)


def _die_with_parent(parent: int) -> None:
    """If the relay is killed, the kernel must not live on unseen. Where the relay's parent is
    a namespace's init (the launcher's, or the container's), its death takes everything down
    anyway; elsewhere the kernel asks for SIGKILL when its parent dies."""
    if _parent_of(parent) != 1:
        with contextlib.suppress(Exception):
            import ctypes

            ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # it died before the death signal was armed
        os._exit(1)
    with contextlib.suppress(OSError):
        # kill(0) and killpg from user code reach the kernel's group, not the relay.
        os.setpgid(0, 0)


# Per architecture: AUDIT_ARCH value, the signalling calls whose first argument is a pid, and
# pidfd_send_signal (refused outright: a /proc/<pid> directory works as its pidfd).
_SIGNAL_CALLS = {
    "x86_64": (0xC000003E, (62, 200, 234, 129, 297, 434), 424),
    "aarch64": (0xC00000B7, (129, 130, 131, 138, 240, 434), 424),
}
_SECCOMP_CALL = {"x86_64": 317, "aarch64": 277}


def _guard_relay(relay: int) -> None:
    """A seccomp filter on the kernel and everything it starts: kill, tkill, tgkill,
    rt_(tg)sigqueueinfo and pidfd_open fail with EPERM when aimed at the relay, its process group
    or every process (-1). Only where a filter is already in place (so no_new_privs is set, and
    turning the sandbox filter off for a measurement turns this off too)."""
    import ctypes
    import struct

    with open("/proc/self/status") as status:
        if "Seccomp:\t2" not in status.read():
            return
    found = _SIGNAL_CALLS.get(os.uname().machine)
    if found is None:
        return
    arch, calls, pidfd_send_signal = found
    targets = {relay, -1, -os.getpgid(0)}
    allow, deny = 0x7FFF0000, 0x00050000 | 1  # SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO | EPERM
    program = [(0x20, 0, 0, 4), (0x15, 1, 0, arch), (0x06, 0, 0, allow), (0x20, 0, 0, 0)]
    checks = len(targets) + 2  # load the argument, compare with each target, allow
    program.append((0x15, len(calls) + 1 + checks, 0, pidfd_send_signal))
    for index, number in enumerate(calls):
        program.append((0x15, len(calls) - index, 0, number))
    program.append((0x06, 0, 0, allow))
    program.append((0x20, 0, 0, 16))  # the first argument's low half (little-endian)
    for index, target in enumerate(sorted(targets)):
        program.append((0x15, len(targets) - index, 0, target & 0xFFFFFFFF))
    program.append((0x06, 0, 0, allow))
    program.append((0x06, 0, 0, deny))
    packed = b"".join(struct.pack("=HBBI", *instruction) for instruction in program)
    buffer = ctypes.create_string_buffer(packed, len(packed))

    class Fprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = Fprog(len(program), ctypes.cast(buffer, ctypes.c_void_p))
    libc = ctypes.CDLL(None)
    # seccomp(SET_MODE_FILTER, SPEC_ALLOW): no speculation mitigations forced on the kernel (see
    # the launcher's filter); the plain prctl where the kernel lacks the flag.
    if libc.syscall(_SECCOMP_CALL[os.uname().machine], 1, 4, ctypes.byref(fprog)) != 0:
        libc.prctl(22, 2, ctypes.byref(fprog), 0, 0)  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER


def _parent_of(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return int(stat.read().rpartition(")")[2].split()[1])
    except (OSError, ValueError, IndexError):
        return -1


def _become_subreaper() -> None:
    """Processes orphaned in the kernel's tree become the relay's children, not init's: a
    snapshot of the kernel (forked so that its parent is the relay) and the kernel a restore
    makes from it are children the relay can wait for."""
    import ctypes

    ctypes.CDLL(None).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _serve(child: int, channel: Any, handover_fd: int) -> None:
    kernel = [child]

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(kernel[0], signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    while True:
        try:
            pid, status = os.waitpid(-1, os.WUNTRACED)
        except ChildProcessError:
            os._exit(1)
        if pid != kernel[0]:
            continue  # an orphan adopted and reaped (a dropped snapshot, a daemon of user code)
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == _HANDOVER_EXIT:
            successor = _successor(handover_fd)
            if successor is not None:
                kernel[0] = successor  # a restored snapshot serves now: nothing ended
                continue
        _rescue(channel)
        if os.WIFSTOPPED(status):
            continue  # stopped: its output so far is out; the host decides what happens next
        code = os.waitstatus_to_exitcode(status)
        os._exit(code if code >= 0 else 128 - code)


def _successor(handover_fd: int) -> int | None:
    """The pid the kernel wrote before it exited to hand over, if it is a child of the relay.
    One record per handover, read in order: a relay scheduled late may find the records of
    several handovers waiting, and each kernel's successor is the one it wrote."""
    try:
        data = os.read(handover_fd, 8)
    except OSError:
        return None
    if len(data) != 8:
        return None
    (pid,) = struct.unpack("=q", data)
    return pid if pid > 1 and _parent_of(pid) == os.getpid() else None


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
