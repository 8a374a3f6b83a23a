"""What a running `lci serve` holds on the host, read from outside: its processes, descriptors and
memory, the mounts under its state dir, its cgroups and its containers. Compared before and after a
soak (with every session closed) to find leaks, and sampled during it to see memory over time."""

from __future__ import annotations

import contextlib
import glob
import os
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil


def owner_tag(pid: int) -> str:
    """The owner tag the engine in process `pid` labels its sandboxes with (engine.core.owners)."""
    return f"{pid}.{int(psutil.Process(pid).create_time())}"


@dataclass
class Snapshot:
    processes: int
    server_fds: int
    server_rss_mb: float
    tree_rss_mb: float
    mounts: int
    cgroups: int
    containers: int
    volumes: int
    fd_kinds: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _inside_sandboxes(server: psutil.Process) -> int:
    """Processes of the server's tree below a subprocess sandbox's own first process: a cold
    sandbox's launcher (the server's child running launcher.py) or a forked one (the zygote's
    child). How many a sandbox holds depends on how it was started (a pooled fork-server sandbox
    waits with its agent's relay forked, a cold one before its agent starts), and every one dies
    with its sandbox: leaks are counted in sandboxes, not in the processes inside them."""
    inside = 0
    for child in server.children():
        with contextlib.suppress(psutil.Error):
            command = " ".join(child.cmdline())
            if "zygote.py" in command:
                roots = child.children()
            elif "launcher.py" in command:
                roots = [child]
            else:
                continue
            inside += sum(len(root.children(recursive=True)) for root in roots)
    return inside


def snapshot(pid: int, state_dir: Path) -> Snapshot:
    server = psutil.Process(pid)
    tree = [server, *server.children(recursive=True)]
    rss = 0
    for process in tree:
        try:
            rss += process.memory_info().rss
        except psutil.Error:
            continue
    tag = owner_tag(pid)
    return Snapshot(
        processes=len(tree) - _inside_sandboxes(server),
        server_fds=server.num_fds(),
        server_rss_mb=server.memory_info().rss / 2**20,
        tree_rss_mb=rss / 2**20,
        mounts=_mounts_under(state_dir),
        cgroups=len(glob.glob(f"/sys/fs/cgroup/*/lci/{tag}-*"))
        + len(glob.glob(f"/sys/fs/cgroup/lci/{tag}-*")),
        containers=_docker_count(["ps", "-aq", "--filter", f"label=lci.owner={tag}"]),
        volumes=_docker_count(["volume", "ls", "-q", "--filter", f"label=lci.owner={tag}"]),
        fd_kinds=_fd_kinds(pid),
    )


def _fd_kinds(pid: int) -> dict[str, int]:
    """The server's descriptors by kind (pipe, socket, pidfd, a file's directory), to say what
    a leaked one is."""
    kinds: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                kind = link.split(":", 1)[0] if ":" in link else os.path.dirname(link)
                kinds[kind] = kinds.get(kind, 0) + 1
    return dict(sorted(kinds.items()))


def _mounts_under(state_dir: Path) -> int:
    prefix = os.path.realpath(state_dir) + "/"
    with open("/proc/self/mounts") as handle:
        return sum(1 for line in handle if line.split()[1].startswith(prefix))


def _docker_count(args: list[str]) -> int:
    try:
        result = subprocess.run(
            ["docker", *args], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return len(result.stdout.split()) if result.returncode == 0 else 0


def docker_leftovers(pid: int) -> list[str]:
    """One line per container (state, role, name) and volume the server in `pid` still has: what
    a leak consists of."""
    label = f"label=lci.owner={owner_tag(pid)}"
    lines = []
    for args in (
        ["ps", "-a", "--filter", label, "--format", '{{.State}} {{.Label "lci.role"}} {{.Names}}'],
        ["volume", "ls", "--filter", label, "--format", "volume {{.Name}}"],
    ):
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            found = subprocess.run(
                ["docker", *args], capture_output=True, text=True, timeout=30, check=False
            )
            lines += found.stdout.splitlines()
    return lines


def leaks(before: Snapshot, after: Snapshot) -> dict[str, int]:
    """What the server holds after the soak (every session closed) beyond what it held before.
    Sockets are left out of the descriptors: the keep-alive pool of the model server's client
    keeps up to 20 connections open by design."""
    counted = ("processes", "mounts", "cgroups", "containers", "volumes")
    found = {
        name: getattr(after, name) - getattr(before, name)
        for name in counted
        if getattr(after, name) > getattr(before, name)
    }
    fds_before = before.server_fds - before.fd_kinds.get("socket", 0)
    fds_after = after.server_fds - after.fd_kinds.get("socket", 0)
    if fds_after > fds_before:
        found["server_fds"] = fds_after - fds_before
    return found
