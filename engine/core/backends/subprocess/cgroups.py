"""Control groups for subprocess sandboxes: the only exact memory, process-count and CPU limits for a
whole process tree. Supports cgroup v2 (unified) and v1 (one hierarchy per controller), whichever the
host has mounted with the memory and pids controllers; `detect()` returns None when neither is usable
(not root, no delegation), and the backend reports that in `Isolation`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from engine.models import MIB, Limits

_WANTED = ("memory", "pids", "cpu")
_MOUNTS = "/proc/self/mounts"


def _write(path: Path, value: str) -> None:
    with open(path, "w") as handle:
        handle.write(value)


def _mounts() -> list[tuple[str, str, set[str]]]:
    result = []
    with open(_MOUNTS) as handle:
        for line in handle:
            parts = line.split()
            if len(parts) >= 4:
                result.append((parts[1], parts[2], set(parts[3].split(","))))
    return result


@dataclass
class Cgroup:
    """One sandbox's group, in one directory per controller hierarchy."""

    version: int
    dirs: dict[str, Path]  # controller -> directory (v2: every controller maps to the same one)

    @property
    def procs_files(self) -> list[str]:
        unique = {str(d / "cgroup.procs") for d in self.dirs.values()}
        return sorted(unique)

    def oom_kills(self) -> int:
        memory = self.dirs.get("memory")
        if memory is None:
            return 0
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        try:
            text = (memory / name).read_text()
        except OSError:
            return 0
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def pids(self) -> set[int]:
        found: set[int] = set()
        for directory in self.dirs.values():
            with contextlib.suppress(OSError):
                found.update(int(p) for p in (directory / "cgroup.procs").read_text().split())
        return found

    def kill_all(self) -> None:
        """SIGKILL every process in the group; a fork racing with the sweep is caught by the next."""
        if self.version == 2 and (self.dirs["pids"] / "cgroup.kill").exists():
            with contextlib.suppress(OSError):
                _write(self.dirs["pids"] / "cgroup.kill", "1")
            return
        for _ in range(100):
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.002)

    def remove(self, timeout: float = 2.0) -> None:
        deadline = time.monotonic() + timeout
        for directory in set(self.dirs.values()):
            while directory.exists():
                try:
                    directory.rmdir()
                except OSError:
                    if time.monotonic() > deadline:
                        break
                    self.kill_all()
                    time.sleep(0.01)


@dataclass
class CgroupTree:
    """Where this host lets the engine create sandbox groups."""

    version: int
    bases: dict[str, Path]  # controller -> the engine's base directory ("lci") in its hierarchy

    @classmethod
    def detect(cls, root: str = "/sys/fs/cgroup") -> CgroupTree | None:
        try:
            tree = cls._find(root)
            if tree is None:
                return None
            tree._prepare()
        except OSError:
            return None
        return tree

    @classmethod
    def _find(cls, root: str) -> CgroupTree | None:
        mounts = _mounts()
        for point, fstype, _ in mounts:
            if fstype == "cgroup2" and point == root:
                available = set((Path(root) / "cgroup.controllers").read_text().split())
                if {"memory", "pids"} <= available:
                    base = Path(root) / "lci"
                    return cls(2, {c: base for c in _WANTED if c in available})
        bases = {}
        for point, fstype, options in mounts:
            if fstype == "cgroup":
                for controller in _WANTED:
                    if controller in options and controller not in bases:
                        bases[controller] = Path(point) / "lci"
        if {"memory", "pids"} <= bases.keys():
            return cls(1, bases)
        return None

    def _prepare(self) -> None:
        for base in set(self.bases.values()):
            base.mkdir(exist_ok=True)
        if self.version == 2:
            controllers = " ".join(f"+{c}" for c in self.bases)
            _write(self.bases["memory"].parent / "cgroup.subtree_control", controllers)
            _write(self.bases["memory"] / "cgroup.subtree_control", controllers)

    def create(self, name: str, limits: Limits) -> Cgroup:
        # Joining a group costs a few ms per hierarchy (v1 synchronises RCU on every migration), so
        # the cpu hierarchy is used only when a CPU quota is asked for.
        wanted = {c: b for c, b in self.bases.items() if c != "cpu" or limits.cpus is not None}
        dirs = {controller: base / name for controller, base in wanted.items()}
        for directory in set(dirs.values()):
            directory.mkdir(exist_ok=True)
        group = Cgroup(self.version, dirs)
        try:
            self.set_limits(group, limits)
        except OSError:
            group.remove()
            raise
        return group

    def set_limits(self, group: Cgroup, limits: Limits) -> None:
        """Write `limits` to `group`, on creation or later (a staged sandbox becoming a session)."""
        memory, pids = group.dirs["memory"], group.dirs["pids"]
        size = limits.memory_mb * MIB
        if self.version == 2:
            _write(memory / "memory.max", str(size))
            with contextlib.suppress(FileNotFoundError):
                _write(memory / "memory.swap.max", "0")
        else:
            # v1 keeps memory+swap >= memory at every step: raise the outer limit first, lower the
            # inner one first. memsw exists only where swap is accounted.
            inner, outer = memory / "memory.limit_in_bytes", memory / "memory.memsw.limit_in_bytes"
            raising = size > int(inner.read_text())
            for path in (outer, inner) if raising else (inner, outer):
                if path is inner:
                    _write(inner, str(size))
                else:
                    with contextlib.suppress(FileNotFoundError, PermissionError):
                        _write(outer, str(size))  # no swap, where accounted
        _write(pids / "pids.max", str(limits.max_procs))
        cpu = group.dirs.get("cpu")
        if cpu is not None:
            period = 100_000
            quota = max(1000, int(limits.cpus * period)) if limits.cpus is not None else None
            if self.version == 2:
                _write(cpu / "cpu.max", f"{quota or 'max'} {period}")
            else:
                _write(cpu / "cpu.cfs_period_us", str(period))
                _write(cpu / "cpu.cfs_quota_us", str(quota or -1))

    def groups(self) -> dict[str, Cgroup]:
        """Existing sandbox groups by name (for the reaper)."""
        names: set[str] = set()
        for base in self.bases.values():
            with contextlib.suppress(OSError):
                names.update(p.name for p in base.iterdir() if p.is_dir())
        return {n: Cgroup(self.version, {c: b / n for c, b in self.bases.items()}) for n in names}
