"""The subprocess sandbox's syscall filter, compiled to classic BPF and installed by the launcher as
the last step before the agent runs (standard library only, loaded beside the launcher by path).

What it refuses is decided by the host (`engine/core/syscalls.py`) and arrives in the sandbox's
config as numbers for this machine's architecture: {"arch", "deny", "clone", "clone3",
"namespace_flags"}. Refused calls fail with EPERM (a Python exception, not a dead sandbox), except
clone3, which fails with ENOSYS so the C library falls back to clone, whose flags the filter can
see; clone with namespace flags is refused. Syscalls of any other ABI (i386 and x32 on x86-64) are
refused outright.
"""

from __future__ import annotations

import ctypes
import errno
import struct
from typing import Any

_X32_BIT = 0x40000000
_LD_W_ABS, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06
_ALLOW = 0x7FFF0000
_ERRNO = 0x00050000
_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 22, 2
_SECCOMP_SET_MODE_FILTER, _SPEC_ALLOW = 1, 4
_OFFSET_NR, _OFFSET_ARCH, _OFFSET_ARG0 = 0, 4, 16


def _program(spec: dict[str, Any]) -> list[tuple[int, int, int, int]]:
    """The filter as (code, jt, jf, k) instructions. Jumps are relative, resolved from labels."""
    code: list[tuple[int, int | str, int | str, int]] = [
        (_LD_W_ABS, 0, 0, _OFFSET_ARCH),
        (_JEQ, 1, 0, int(spec["arch"])),
        (_RET, 0, 0, _ERRNO | errno.EPERM),  # any other ABI
        (_LD_W_ABS, 0, 0, _OFFSET_NR),
        (_JGE, "deny", 0, _X32_BIT),  # x32 numbers on x86-64; no syscall is numbered that high
    ]
    for number in spec["deny"]:
        code.append((_JEQ, "deny", 0, int(number)))
    code.append((_JEQ, "nosys", 0, int(spec["clone3"])))
    code.append((_JEQ, 0, "allow", int(spec["clone"])))
    code.append((_LD_W_ABS, 0, 0, _OFFSET_ARG0))  # clone's flags (low half, little-endian)
    code.append((_JSET, "deny", "allow", int(spec["namespace_flags"])))
    labels: dict[str, int] = {}
    labels["allow"] = len(code)
    code.append((_RET, 0, 0, _ALLOW))
    labels["deny"] = len(code)
    code.append((_RET, 0, 0, _ERRNO | errno.EPERM))
    labels["nosys"] = len(code)
    code.append((_RET, 0, 0, _ERRNO | errno.ENOSYS))
    resolved = []
    for index, (op, jt, jf, k) in enumerate(code):
        offsets = [labels[j] - index - 1 if isinstance(j, str) else j for j in (jt, jf)]
        if not all(0 <= o <= 255 for o in offsets):
            raise ValueError("seccomp filter jump out of range")
        resolved.append((op, offsets[0], offsets[1], k))
    return resolved


class _Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install(libc: ctypes.CDLL, spec: dict[str, Any]) -> None:
    """Install the filter on the calling thread (and everything it later starts). Needs
    no_new_privs (or CAP_SYS_ADMIN); raises OSError when the kernel refuses."""
    program = _program(spec)
    packed = b"".join(struct.pack("=HBBI", *instruction) for instruction in program)
    buffer = ctypes.create_string_buffer(packed, len(packed))
    fprog = _Fprog(len(program), ctypes.cast(buffer, ctypes.c_void_p))
    # SPEC_ALLOW: without it the kernel also forces speculation mitigations (SSBD, STIBP) on every
    # filtered process, which quadruples a round trip here; they protect the filtered process from
    # others, not others from it, and the sandbox holds nothing to protect that way.
    seccomp_nr = spec.get("seccomp")
    if seccomp_nr is not None and (
        libc.syscall(seccomp_nr, _SECCOMP_SET_MODE_FILTER, _SPEC_ALLOW, ctypes.byref(fprog)) == 0
    ):
        return
    if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"seccomp filter: {errno.errorcode.get(err, err)}")


def clear_keyrings(libc: ctypes.CDLL, keyctl: int) -> None:
    """Start with empty keyrings: a uid used by an earlier sandbox may have keys left in its user
    keyrings, and the session keyring is the engine's. Best effort (no keyrings in the kernel is
    fine); called after the uid drop, before the filter refuses keyctl."""
    keyctl_join_session, keyctl_clear = 1, 7
    user_keyring, user_session_keyring = -4, -5
    libc.syscall(keyctl, keyctl_join_session, None)
    for keyring in (user_keyring, user_session_keyring):
        libc.syscall(keyctl, keyctl_clear, keyring)
