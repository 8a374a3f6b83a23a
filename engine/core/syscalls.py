"""The syscalls no sandbox may make, on both backends: one table, compiled to a BPF filter by the
subprocess launcher and to a seccomp profile for containers.

The list follows what Docker's default profile refuses to an unprivileged container, plus kernel
surface a code interpreter never needs and that keeps producing exploits: io_uring, the keyrings
(keyctl, add_key, request_key), bpf, userfaultfd, perf events, ptrace and cross-process memory
access, mounts (old and new API), modify_ldt, namespaces (unshare, setns, clone with namespace flags), kexec
and kernel modules. Refused calls fail with EPERM; clone3 fails with ENOSYS, so the C library falls
back to clone, whose flags a filter can inspect (clone3 passes them in memory it cannot read).

LCI_SECCOMP=0 starts subprocess sandboxes without the filter, only to measure its cost; a
session's `isolation.syscall_filter` says whether one applied.
"""

from __future__ import annotations

import errno
import os
from typing import Any

NAME = "seccomp deny-list (Docker's default refusals, io_uring, keyrings, bpf, ptrace, mounts)"


# (x86-64, aarch64) numbers; None where the call does not exist on that architecture.
DENIED = {
    "acct": (163, 89),
    "add_key": (248, 217),
    "bpf": (321, 280),
    "clock_adjtime": (305, 266),
    "clock_settime": (227, 112),
    "create_module": (174, None),
    "delete_module": (176, 106),
    "finit_module": (313, 273),
    "fsconfig": (431, 431),
    "fsmount": (432, 432),
    "fsopen": (430, 430),
    "fspick": (433, 433),
    "get_kernel_syms": (177, None),
    "init_module": (175, 105),
    "io_uring_enter": (426, 426),
    "io_uring_register": (427, 427),
    "io_uring_setup": (425, 425),
    "ioperm": (173, None),
    "iopl": (172, None),
    "kcmp": (312, 272),
    "kexec_file_load": (320, 294),
    "kexec_load": (246, 104),
    "keyctl": (250, 219),
    "lookup_dcookie": (212, 18),
    # The x86 local descriptor table: 16-bit and segment tricks only, and a history of kernel
    # bugs (Docker's default profile refuses it too).
    "modify_ldt": (154, None),
    "mount": (165, 40),
    "mount_setattr": (442, 442),
    "move_mount": (429, 429),
    "name_to_handle_at": (303, 264),
    "nfsservctl": (180, 42),
    "open_by_handle_at": (304, 265),
    "open_tree": (428, 428),
    "perf_event_open": (298, 241),
    "pidfd_getfd": (438, 438),
    "pivot_root": (155, 41),
    "process_vm_readv": (310, 270),
    "process_vm_writev": (311, 271),
    "ptrace": (101, 117),
    "query_module": (178, None),
    "quotactl": (179, 60),
    "quotactl_fd": (443, 443),
    "reboot": (169, 142),
    "request_key": (249, 218),
    "setns": (308, 268),
    "settimeofday": (164, 170),
    "swapoff": (168, 225),
    "swapon": (167, 224),
    "syslog": (103, 116),
    "sysfs": (139, None),
    "_sysctl": (156, None),
    "umount2": (166, 39),
    "unshare": (272, 97),
    "uselib": (134, None),
    "userfaultfd": (323, 282),
    "ustat": (136, None),
    "vhangup": (153, 58),
}

CLONE = (56, 220)
CLONE3 = (435, 435)
SECCOMP = (317, 277)
# CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET
NAMESPACE_FLAGS = (
    0x00020000,
    0x02000000,
    0x04000000,
    0x08000000,
    0x10000000,
    0x20000000,
    0x40000000,
)
_MACHINES = {"x86_64": (0, 0xC000003E), "aarch64": (1, 0xC00000B7)}  # column, AUDIT_ARCH_*


def sandbox_filter(machine: str | None = None) -> dict[str, Any] | None:
    """The deny-list in this machine's syscall numbers, as the launcher's filter takes it; None on
    an architecture the table does not cover."""
    found = _MACHINES.get(machine or os.uname().machine)
    if found is None:
        return None
    column, arch = found
    return {
        "arch": arch,
        "deny": sorted(n[column] for n in DENIED.values() if n[column] is not None),
        "clone": CLONE[column],
        "clone3": CLONE3[column],
        "keyctl": DENIED["keyctl"][column],
        "seccomp": SECCOMP[column],
        "namespace_flags": sum(NAMESPACE_FLAGS),
    }


def docker_profile() -> dict[str, Any]:
    """The same refusals as a container seccomp profile (default allow, the table denied)."""
    deny = {"action": "SCMP_ACT_ERRNO", "errnoRet": errno.EPERM}
    rules: list[dict[str, Any]] = [{"names": sorted(DENIED), **deny}]
    rules.append({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS})
    for flag in NAMESPACE_FLAGS:
        condition = {"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}
        rules.append({"names": ["clone"], "args": [condition], **deny})
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "archMap": [
            {
                "architecture": "SCMP_ARCH_X86_64",
                "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            },
            {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
        ],
        "syscalls": rules,
    }
