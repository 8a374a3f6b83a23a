"""What a sandbox container looks like: the hardened create/host-config arguments (docs/security.md,
container hardening), its labels, and the isolation it reports. Kept apart from the code that drives
containers so the whole security posture of the docker backend reads in one place. Plain data only:
the Docker SDK is imported by `api.py` alone."""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field
from typing import Any

from engine.core.agent_files import bootstrap_argv
from engine.core.output import relay_env
from engine.core.syscalls import NAME as SECCOMP_NAME
from engine.core.syscalls import docker_profile
from engine.core.workdir import WORKDIR_ALIASES
from engine.models import MIB, Isolation, Limits

SANDBOX_WORKDIR = "/workspace"
SANDBOX_AGENT = "/opt/lci-agent"
# The sandbox image's `sandbox` user; numeric, so any image works without a passwd entry for it.
SANDBOX_UID = 1000
TMP_MB = 64
SHM_MB = 16
DATA_HEADROOM_MB = 1024

LABEL_OWNER = "lci.owner"  # "<pid>.<start time>" of the engine process that made the container
LABEL_MACHINE = "lci.host"  # which boot and pid namespace that pid belongs to
LABEL_BACKEND = "lci.backend"  # one backend instance (several may live in one process)
# The session id, or "pool" for a warm container. Labels cannot change, so a claimed warm container
# keeps "pool" and is renamed lci-<session id>-0 instead.
LABEL_SESSION = "lci.session"
LABEL_PROTOCOL = "lci.agent_protocol"  # on images: the agent protocol they were built for
# On images: the digest of the agent built into them at SANDBOX_AGENT (`agent_files.agent_digest`).
LABEL_AGENT = "lci.agent_digest"
# On containers: "keeper" for the container that holds a session's volume (see host.py).
LABEL_ROLE = "lci.role"
KEEPER_MB = 64
KEEPER_PROCS = 16
# Under gVisor the container's host cgroup holds the user-space kernel (its Go threads, its gofer,
# and with the ptrace platform a stub process per sandbox process, with a thread per kernel thread
# that ran it), not the sandbox's processes: 233 host tasks for 28 busy sandbox processes on 2
# cores. The exact limit is RLIMIT_NPROC, which gVisor's kernel enforces for the sandbox alone (it
# has its own uids); the host's pids limit is only a backstop against the runtime itself.
GVISOR_HOST_PIDS = 1024
GVISOR_PIDS_PER_PROC = 16

_AGENT_ARGV = bootstrap_argv("python3", SANDBOX_AGENT)
# The keeper only waits, until its stdin ends: like the agent, it goes away by itself when the
# engine's attach connection does (an engine killed outright). python3 is the one program every
# usable image has.
_KEEPER_ARGV = ["python3", "-I", "-S", "-c", "import sys\nsys.stdin.buffer.read()"]
_SECCOMP_PROFILE = json.dumps(docker_profile(), separators=(",", ":"))
_BASE_ENV = {
    "HOME": SANDBOX_WORKDIR,
    "TMPDIR": "/tmp",
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONUNBUFFERED": "1",
    "MPLBACKEND": "Agg",
    "MPLCONFIGDIR": "/tmp/.matplotlib",
}


def container_limits(limits: Limits) -> tuple[object, ...]:
    """The limits baked into a container at creation. Two sessions whose limits agree here can
    share a warm container; the rest (timeouts, CPU seconds, output) are applied per execution."""
    return (
        limits.memory_mb,
        limits.max_procs,
        limits.disk_mb,
        limits.open_files,
        limits.network,
        limits.cpus,
    )


def _thread_env(limits: Limits) -> dict[str, str]:
    # Math libraries start one thread per host CPU; inside an exact pids limit that can make
    # `import numpy` fail on a big machine, so size their pools to the sandbox instead.
    cpus = limits.cpus if limits.cpus is not None else (os.cpu_count() or 1)
    threads = str(max(1, min(int(cpus), 8, limits.max_procs // 4)))
    return {
        name: threads for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    }


@dataclass(frozen=True)
class ContainerPlan:
    """One container to create: which image, with which limits, with which volume as its
    workdir, and the agent from the image itself or (`agent_volume`) from a volume."""

    image: str
    limits: Limits
    workdir: str  # the name of the session's volume
    labels: dict[str, str]
    name_prefix: str
    env: dict[str, str] = field(default_factory=dict)
    preload: tuple[str, ...] = ()  # modules the agent imports before it says hello
    network: str = "bridge"  # the network of a container with `limits.network`
    agent_volume: str | None = None
    runtime: str | None = None  # the daemon's OCI runtime (`runsc`: gVisor); None: its default
    gvisor: bool = False  # the runtime is gVisor's runsc (see GVISOR_HOST_PIDS)

    def binds(self) -> list[str]:
        # nocopy: the image's own /workspace (or an older agent) is never copied into a volume.
        # The workdir is mounted again where clients expect it (see WORKDIR_ALIASES).
        binds = [f"{self.workdir}:{path}:rw,nocopy" for path in (SANDBOX_WORKDIR, *WORKDIR_ALIASES)]
        if self.agent_volume is not None:
            binds.append(f"{self.agent_volume}:{SANDBOX_AGENT}:ro,nocopy")
        return binds

    def _preload_args(self) -> list[str]:
        return [f"--preload={','.join(self.preload)}"] if self.preload else []

    def create_args(self, user: tuple[int, int]) -> dict[str, Any]:
        """Arguments of `APIClient.create_container` (besides image and host config)."""
        return {
            # The image's own ENTRYPOINT, if any, is replaced: the agent is the only process.
            "entrypoint": _AGENT_ARGV[:1],
            "command": [*_AGENT_ARGV[1:], *self._preload_args()],
            # Unique per container: a replacement may be created while its predecessor's
            # removal is still finishing.
            "name": f"{self.name_prefix}-{uuid.uuid4().hex[:8]}",
            "hostname": "sandbox",
            "user": f"{user[0]}:{user[1]}",
            "working_dir": SANDBOX_WORKDIR,
            "environment": {
                **_BASE_ENV,
                **_thread_env(self.limits),
                **relay_env(self.limits.memory_mb),
                **self.env,
            },
            "labels": self.labels,
            # stdin stays open for requests; StdinOnce closes it when the engine's attach
            # connection goes away, so an orphaned agent reads EOF and exits on its own.
            "stdin_open": True,
            "detach": False,
            "tty": False,
        }

    def host_args(self) -> dict[str, Any]:
        """Arguments of `APIClient.create_host_config`: the hardening of docs/security.md,
        container hardening."""
        limits = self.limits
        memory = limits.memory_mb * MIB
        data = memory + DATA_HEADROOM_MB * MIB
        return {
            "init": True,  # docker-init as PID 1: reaps zombies, forwards SIGINT to the agent
            "network_mode": self.network if limits.network else "none",
            "cap_drop": ["ALL"],
            # The engine's syscall deny-list (engine/core/syscalls.py) replaces the daemon's
            # default profile, which lets io_uring and ptrace (of docker-init too) through.
            "security_opt": ["no-new-privileges:true", f"seccomp={_SECCOMP_PROFILE}"],
            "privileged": False,
            "runtime": self.runtime,
            "read_only": True,
            "binds": self.binds(),
            "tmpfs": {"/tmp": f"rw,nosuid,nodev,noexec,size={TMP_MB}m,mode=1777"},
            "shm_size": SHM_MB * MIB,
            "mem_limit": memory,
            "memswap_limit": memory,  # equal to the memory limit: no swap
            "pids_limit": self._pids(limits.max_procs),  # exact, and counts threads too
            "nano_cpus": int(limits.cpus * 1e9) if limits.cpus is not None else None,
            "ulimits": [
                {"name": "nofile", "soft": limits.open_files, "hard": limits.open_files},
                {"name": "core", "soft": 0, "hard": 0},
                {"name": "fsize", "soft": limits.disk_mb * MIB, "hard": limits.disk_mb * MIB},
                # Private writable memory per process, with headroom over the exact cgroup
                # limit: it turns one huge allocation into a MemoryError instead of an OOM kill.
                {"name": "data", "soft": data, "hard": data},
                *self._nproc(limits.max_procs),
            ],
            "oom_score_adj": 1000,  # the sandbox, never the host, is the OOM killer's victim
            "ipc_mode": "private",
            "log_config": {"type": "json-file", "config": {"max-size": "1m", "max-file": "1"}},
        }

    def _pids(self, procs: int) -> int:
        return GVISOR_HOST_PIDS + GVISOR_PIDS_PER_PROC * procs if self.gvisor else procs

    def _nproc(self, procs: int) -> list[dict[str, Any]]:
        # Only under gVisor: on the host kernel RLIMIT_NPROC counts every process of the uid,
        # those of the other sandboxes too.
        return [{"name": "nproc", "soft": procs, "hard": procs}] if self.gvisor else []

    def keeper_args(self, user: tuple[int, int]) -> dict[str, Any]:
        """`create_container` arguments of the session's keeper: a container that only waits,
        holding the workdir volume mounted (a tmpfs volume loses its content when no container
        has it mounted, between a sandbox's removal and its replacement's start), and in which
        the engine reads and writes the session's files."""
        args = self.create_args(user)
        args.update(
            entrypoint=_KEEPER_ARGV[:1],
            command=_KEEPER_ARGV[1:],
            name=args["name"].replace("lci-", "lci-keeper-", 1),
            environment=dict(_BASE_ENV),
            labels={**self.labels, LABEL_ROLE: "keeper"},
        )
        return args

    def keeper_host_args(self) -> dict[str, Any]:
        """The sandbox's hardening with small limits: it runs nothing but the file helper. Its
        memory limit counts the workdir too: tmpfs pages are charged to the writer's cgroup,
        and the helper writes the uploads."""
        host = self.host_args()
        disk = self.limits.disk_mb * MIB
        memory = KEEPER_MB * MIB + disk
        host.update(
            network_mode="none",
            mem_limit=memory,
            memswap_limit=memory,
            pids_limit=self._pids(KEEPER_PROCS),
            nano_cpus=None,
            ulimits=[
                {"name": "nofile", "soft": 256, "hard": 256},
                {"name": "core", "soft": 0, "hard": 0},
                {"name": "fsize", "soft": disk, "hard": disk},
                *self._nproc(KEEPER_PROCS),
            ],
        )
        return host


def volume_options(disk_mb: int, owner: tuple[int, int]) -> dict[str, str]:
    """`local` driver options of a workdir volume: a tmpfs of exactly `disk_mb`, owned by the
    sandbox user, mounted by the daemon wherever it runs."""
    uid, gid = owner
    return {
        "type": "tmpfs",
        "device": "tmpfs",
        "o": f"size={disk_mb}m,uid={uid},gid={gid},mode=0700,nosuid,nodev",
    }


def isolation(limits: Limits) -> Isolation:
    notes = []
    if limits.network:
        notes.append("network access is enabled for this session")
    return Isolation(
        separate_user=True,
        pid_namespace=True,
        mount_namespace=True,
        network_namespace=not limits.network,
        private_filesystem=True,
        memory_limit="exact",
        process_limit="exact",
        disk_limit="exact",  # the volume is a tmpfs of disk_mb
        cpu_quota=limits.cpus is not None,
        syscall_filter=SECCOMP_NAME,
        notes=notes,
    )


def is_gvisor(program: str) -> bool:
    """Whether the daemon's runtime program (a path, or a containerd shim type such as
    `io.containerd.runsc.v1`) is gVisor's runsc."""
    return "runsc" in os.path.basename(program)
