"""Capabilities, dropped before user code runs. Standard library only, loaded by `launcher.py`.

A sandbox built in a user namespace holds every capability *in that namespace*, and a fork-server
child runs the agent in place, without the exec that would clear them: sandbox code could then
remount its read-only binds (the staged agent among them) writable. So the worker empties every set:
the bounding set and the ambient set first (that needs CAP_SETPCAP, so while it is still held),
then, once its uid is final, the permitted, effective and inheritable sets; then it checks
/proc/self/status and refuses to go on if anything is left.
"""

from __future__ import annotations

import ctypes
import os

PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
CAP_SETPCAP = 8
_CAPABILITY_VERSION_3 = 0x20080522
_SETS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")
_libc = ctypes.CDLL(None, use_errno=True)


class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _fail(what: str) -> None:
    errno = ctypes.get_errno()
    raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as handle:
            return int(handle.read())
    except (OSError, ValueError):
        return 63  # probed one by one below: unknown capabilities answer EINVAL


def capability_sets() -> dict[str, int]:
    """This process's capability sets, as /proc/self/status reports them."""
    sets = {}
    with open("/proc/self/status") as handle:
        for line in handle:
            name, _, value = line.partition(":")
            if name in _SETS:
                sets[name] = int(value.strip(), 16)
    return sets


def drop_bounding_and_ambient() -> bool:
    """Empty the bounding and ambient sets, so no later exec can regain a capability; True when
    the bounding set was emptied. Without CAP_SETPCAP (an engine that is not root and has no user
    namespace) it stays as it is, but then nothing is held to begin with."""
    cleared = _libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) == 0
    if not cleared and ctypes.get_errno() != 22:  # EINVAL: a kernel without ambient capabilities
        _fail("PR_CAP_AMBIENT_CLEAR_ALL")
    if not capability_sets().get("CapEff", 0) >> CAP_SETPCAP & 1:
        return False
    for cap in range(_last_cap() + 1):
        held = _libc.prctl(PR_CAPBSET_READ, cap, 0, 0, 0)
        if held < 0:
            break  # past the last capability this kernel knows
        if held and _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            _fail(f"PR_CAPBSET_DROP {cap}")
    return True


def clear_process_sets() -> None:
    """Empty the effective, permitted and inheritable sets (lowering them needs no privilege)."""
    header = _Header(_CAPABILITY_VERSION_3, 0)
    data = (_Data * 2)()
    if _libc.capset(ctypes.byref(header), data) != 0:
        _fail("capset")


def check_none_left(bounding_dropped: bool) -> None:
    """OSError unless every set is empty (the bounding set only if it was dropped)."""
    left = {name: value for name, value in capability_sets().items() if value}
    if not bounding_dropped:
        left.pop("CapBnd", None)
    if left:
        shown = ", ".join(f"{name}={value:x}" for name, value in sorted(left.items()))
        raise OSError(1, f"capabilities left before user code: {shown}")
