"""A subprocess session's host side: its uid, cgroup and workdir, and the factory of its sandboxes."""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any

from engine.agent import tree
from engine.config import Settings
from engine.core import workdir as wd
from engine.core.backends.subprocess.cgroups import Cgroup
from engine.core.backends.subprocess.forkserver import ForkServer
from engine.core.backends.subprocess.probe import MachineProbe, host_addresses
from engine.core.backends.subprocess.sandbox import SubprocessSandbox
from engine.core.backends.subprocess.uids import UidLease
from engine.core.backends.subprocess.usage import measure
from engine.core.entries import local_call
from engine.core.output import relay_env
from engine.core.process_channel import ProcessChannel
from engine.core.sandbox import Sandbox, SessionHost
from engine.errors import SandboxError, SandboxStartError
from engine.models import MIB, FileInfo, Isolation, SessionSpec, SessionUsage

_SANDBOX_WORKDIR = "/workspace"
_SANDBOX_AGENT = "/opt/lci-agent"
_PASSTHROUGH_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "TZ")


def passthrough_env() -> dict[str, str]:
    """The engine's settings of the few variables sandboxes inherit (CPU tuning, time zone)."""
    return {k: os.environ[k] for k in _PASSTHROUGH_ENV if k in os.environ}


class SubprocessHost(SessionHost):
    """A session's uid, cgroup and workdir; each spawn starts a sandbox on them (forked from the
    fork server when it runs, else a fresh interpreter).

    A staged host (the warm pool's) builds its first sandbox for no session yet: `stage` starts it
    up to the point where only the session's own settings are missing, and `specialize` hands it
    a session's spec (limits, environment), so the pool serves sessions with any limits."""

    def __init__(
        self,
        probe: MachineProbe,
        settings: Settings,
        session_id: str,
        spec: SessionSpec,
        lease: UidLease | None,
        forkserver: ForkServer | None = None,
        staged: bool = False,
    ) -> None:
        self._forkserver = forkserver
        self.staged = staged
        self.warm: Sandbox | None = None  # started ahead of time by the warm pool
        self._current: SubprocessSandbox | None = None  # the last sandbox spawned
        self._probe = probe
        self._settings = settings
        self._spec = spec
        self._lease = lease
        self._uid = lease.uid if lease is not None else None
        self._dir = probe.owner_dir / session_id
        self.workdir = str(self._dir / "work")
        self._root = str(self._dir / "root")
        self._cgroup: Cgroup | None = None
        self._mounted = False
        self.isolation = Isolation()
        self.sandbox_workdir = self.workdir
        self._name = f"{probe.owner_tag}-{session_id}"

    def prepare(self) -> None:
        limits = self._spec.limits
        os.makedirs(self._dir, mode=0o711)
        os.mkdir(self.workdir, 0o700)
        os.mkdir(self._root, 0o755)
        owner = self._owner()
        self.isolation = self._probe.isolation(limits)
        if self._probe.is_root:
            wd.mount_tmpfs(self.workdir, limits.disk_mb, *owner)
            self._mounted = True
        elif owner != (os.getuid(), os.getgid()):
            os.chown(self.workdir, *owner)
        if self._probe.cgroups is not None:
            self._cgroup = self._probe.cgroups.create(self._name, limits)
        if self._probe.namespaces:
            self.sandbox_workdir = _SANDBOX_WORKDIR

    def _owner(self) -> tuple[int, int]:
        if self._uid is None:
            return os.getuid(), os.getgid()
        return self._uid, self._uid

    def _config(self) -> dict[str, object]:
        limits = self._spec.limits
        probe = self._probe
        env = passthrough_env()
        tmp = "/tmp" if probe.namespaces else self.sandbox_workdir
        env |= {
            "PATH": f"{os.path.dirname(self._settings.sandbox_python)}:/usr/local/bin:/usr/bin:/bin",
            "HOME": self.sandbox_workdir,
            "TMPDIR": tmp,
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
            "MPLBACKEND": "Agg",
            **relay_env(limits.memory_mb),
            "MPLCONFIGDIR": f"{tmp}/lci-seed/matplotlib"
            if probe.namespaces
            else f"{tmp}/.matplotlib",
            **self._spec.env,
        }
        memory = limits.memory_mb * MIB
        return {
            "python": self._settings.sandbox_python,
            "agent_root": str(probe.agent_root),
            "sandbox_agent_root": _SANDBOX_AGENT if probe.namespaces else str(probe.agent_root),
            "workdir": self.workdir,
            "sandbox_workdir": self.sandbox_workdir,
            "workdir_aliases": list(wd.WORKDIR_ALIASES),
            "root_dir": self._root,
            "uid": self._uid,
            "gid": self._uid,
            "namespaces": probe.namespaces,
            "user_namespace": probe.namespaces and not probe.is_root,
            "network": limits.network,
            "slirp4netns": probe.slirp4netns,
            "blocked_addresses": host_addresses() if limits.network else [],
            # slirp4netns's DNS forwarder; the host's resolvers may sit on its loopback.
            "resolv_conf": "nameserver 10.0.2.3\n" if limits.network else None,
            "cgroups": self._cgroup.procs_files if self._cgroup else [],
            "readonly": probe.readonly_paths,
            "symlinks": probe.symlinks,
            "tmp_mb": 64,
            "staged": self.staged,
            "seccomp": probe.seccomp,
            "seed_dir": str(probe.seed_dir) if probe.seed_dir else None,
            "env": env,
            "rlimits": {
                # Address space is per process and counts reservations; with an exact memory cgroup
                # it only turns one huge allocation into a MemoryError, so it gets headroom.
                "as": memory + (1024 * MIB if self._cgroup else 0),
                "fsize": limits.disk_mb * MIB,
                "nofile": limits.open_files,
                "nproc": limits.max_procs,
                "core": 0,
                "memlock": 0,
                "msgqueue": 0,
            },
        }

    async def stage(self) -> Sandbox:
        """Start this host's sandbox up to its `specialize` request; see the class docstring."""
        self.warm = await self._launch(staged=True)
        return self.warm

    async def _launch(self, staged: bool) -> SubprocessSandbox:
        """Start a sandbox and wait until it is staged or has said hello; on any failure
        (cancellation too: a pool closing mid-start) leave nothing running."""
        sandbox = await SubprocessSandbox.launch(self._config(), self._cgroup, self._forkserver)
        self._current = sandbox
        try:
            if staged:
                await sandbox.wait_staged(timeout=30)
            else:
                await sandbox.wait_ready(timeout=30)
        except BaseException:
            await asyncio.shield(sandbox.kill())
            raise
        return sandbox

    async def specialize(self, spec: SessionSpec) -> None:
        """Make the staged sandbox the sandbox of a session with `spec`, and wait for its hello.
        The cgroup limits and the workdir size change here; the sandbox itself drops to its uid,
        then applies the rlimits and environment, exactly as a sandbox started for `spec` does."""
        sandbox = self.warm
        if sandbox is None or not self.staged:
            raise SandboxStartError("this host has no staged sandbox")
        previous, self._spec, self.staged = self._spec.limits, spec, False
        limits = spec.limits
        try:
            if self._mounted and limits.disk_mb != previous.disk_mb:
                wd.resize_tmpfs(self.workdir, limits.disk_mb)
            if self._cgroup is not None:
                assert self._probe.cgroups is not None  # it made the group
                self._probe.cgroups.set_limits(self._cgroup, limits)
        except OSError as exc:
            raise SandboxStartError(f"could not apply the session's limits: {exc}") from exc
        # Its notes do not depend on limits: `_new_host` already held them to require_isolation.
        self.isolation = self._probe.isolation(limits)
        config = self._config()
        sandbox.send({"type": "specialize", "rlimits": config["rlimits"], "env": config["env"]})
        await sandbox.wait_ready(timeout=30)

    async def spawn(self) -> Sandbox:
        warm, self.warm = self.warm, None
        if warm is not None:
            if warm.alive and not self.staged:
                return warm
            await warm.kill()
        self.staged = False  # a restart starts a sandbox for this host's own spec
        return await self._launch(staged=False)

    async def open_processes(self) -> ProcessChannel:
        from engine.core.backends.subprocess import processes

        sandbox = self._current
        if sandbox is None or not sandbox.alive:
            raise SandboxError("the sandbox is not running")
        cfg = {**self._config(), "staged": False}
        if sandbox.agent_root is not None:  # a fork-server sandbox has it where the host does
            cfg["sandbox_agent_root"] = sandbox.agent_root
        if self._probe.namespaces:
            cfg["join"] = processes.sandbox_init(sandbox.pid)
        else:
            cfg["join"] = -1  # no namespaces to join: the launcher applies what it can
        return await processes.open_channel(cfg)

    async def usage(self) -> SessionUsage:
        current = self._current
        pid = current.pid if current is not None and current.alive else None
        return await asyncio.to_thread(measure, self._cgroup, pid, self.workdir, self._mounted)

    async def write_file(self, path: str, data: bytes) -> None:
        parts = wd.split_path(path, self.sandbox_workdir)
        await wd.off_loop(wd.write_file, self.workdir, parts, data, self._owner())

    async def read_file(self, path: str, max_bytes: int) -> bytes:
        parts = wd.split_path(path, self.sandbox_workdir)
        return await wd.off_loop(wd.read_file, self.workdir, parts, max_bytes)

    async def list_files(self) -> list[FileInfo]:
        return await wd.off_loop(wd.list_files, self.workdir)

    async def delete_file(self, path: str) -> None:
        parts = wd.split_path(path, self.sandbox_workdir)
        await wd.off_loop(wd.delete_file, self.workdir, parts)

    async def tree_op(self, op: str, path: str, args: dict[str, Any]) -> Any:
        run = tree.dispatch
        return await wd.off_loop(local_call, run, self.workdir, op, path, args, self._owner())

    async def release(self) -> None:
        await asyncio.to_thread(self._release)

    def _release(self) -> None:
        if self._cgroup is not None:
            self._cgroup.kill_all()
            self._cgroup.remove()
        if self._mounted:
            with contextlib.suppress(OSError):
                wd.unmount(self.workdir)
        wd.remove_tree(str(self._dir))
        if self._lease is not None:
            self._lease.release()  # last: nothing of the session runs as this uid any more
