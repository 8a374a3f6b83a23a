"""What a subprocess sandbox uses: CPU and memory from its cgroup (v2 or v1) or, without one, from
its process tree; disk from its workdir (the tmpfs's own count when it has one); network bytes from
its network namespace's interfaces, only when it has a namespace of its own (otherwise the figures
would be the host's).

Blocking (it reads /proc and /sys): the host calls it on a worker thread."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import psutil

from engine.core.backends.subprocess.cgroups import Cgroup
from engine.models import SessionUsage


def measure(cgroup: Cgroup | None, pid: int | None, workdir: str, tmpfs: bool) -> SessionUsage:
    """`pid`: the sandbox's launcher (None when no sandbox runs); `tmpfs`: the workdir is a
    mount of its own, whose used blocks are the session's disk use."""
    tree = _tree(pid)
    cpu, memory, peak = _from_cgroup(cgroup) if cgroup is not None else (None, None, None)
    if cpu is None and tree:
        cpu = sum(_cpu(p) for p in tree)
    if memory is None and tree:
        memory = sum(_rss(p) for p in tree)
    rx, tx = _network(tree[-1].pid) if tree else (None, None)
    return SessionUsage(
        cpu_s=round(cpu, 3) if cpu is not None else None,
        memory_bytes=memory,
        memory_peak_bytes=peak if peak is not None else memory,
        disk_bytes=_disk(workdir, tmpfs),
        net_rx_bytes=rx,
        net_tx_bytes=tx,
        measured_at=time.time(),
    )


def _tree(pid: int | None) -> list[psutil.Process]:
    if pid is None:
        return []
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def _cpu(process: psutil.Process) -> float:
    try:
        t = process.cpu_times()
    except psutil.Error:
        return 0.0
    return float(t.user + t.system + t.children_user + t.children_system)


def _rss(process: psutil.Process) -> int:
    try:
        return int(process.memory_info().rss)
    except psutil.Error:
        return 0


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _from_cgroup(group: Cgroup) -> tuple[float | None, int | None, int | None]:
    memory = group.dirs.get("memory")
    if memory is None:
        return None, None, None
    if group.version == 2:
        cpu = None
        with contextlib.suppress(OSError):
            for line in (memory / "cpu.stat").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "usage_usec":
                    cpu = int(value) / 1e6
        return cpu, _read_int(memory / "memory.current"), _read_int(memory / "memory.peak")
    # v1: CPU time is in cpuacct, which sandboxes do not join; the process tree tells it.
    current = _read_int(memory / "memory.usage_in_bytes")
    return None, current, _read_int(memory / "memory.max_usage_in_bytes")


def _network(pid: int) -> tuple[int | None, int | None]:
    """Bytes received and sent on the interfaces of `pid`'s network namespace, loopback left
    out; (None, None) when it shares the engine's namespace."""
    try:
        if os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat("/proc/self/ns/net").st_ino:
            return None, None
        lines = Path(f"/proc/{pid}/net/dev").read_text().splitlines()[2:]
    except OSError:
        return None, None
    rx = tx = 0
    for line in lines:
        name, _, counters = line.partition(":")
        fields = counters.split()
        if name.strip() != "lo" and len(fields) >= 9:
            rx, tx = rx + int(fields[0]), tx + int(fields[8])
    return rx, tx


def _disk(workdir: str, tmpfs: bool) -> int | None:
    if tmpfs:
        try:
            st = os.statvfs(workdir)
        except OSError:
            return None
        return (st.f_blocks - st.f_bfree) * st.f_frsize
    total = 0
    for root, _, files in os.walk(workdir):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total
