"""The subprocess backend: each sandbox is a process tree built by `launcher.py`.

As root it gets pid, mount, network, ipc and uts namespaces, a private read-only root filesystem, a
dedicated uid, cgroup memory/pids/CPU limits, a tmpfs workdir with an exact size, and rlimits. Without
root it uses unprivileged user namespaces where the kernel allows them, and otherwise falls back to
rlimits in its own process group; what a session lacks is listed in `SessionInfo.isolation`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import uuid
from collections.abc import Awaitable, Callable
from itertools import count

from engine.config import Settings
from engine.core import workdir as wd
from engine.core.agent_files import bootstrap_argv, stage_agent
from engine.core.cgroups import Cgroup
from engine.core.forkserver import LAUNCHER, ForkServer, ForkServerError
from engine.core.host_probe import HostProbe
from engine.core.sandbox import ExitInfo, Sandbox, SessionHost
from engine.core.warm_pool import Slot, WarmPool
from engine.errors import SandboxStartError
from engine.models import FileInfo, Isolation, Limits, SessionSpec

MIB = 1 << 20
log = logging.getLogger(__name__)
_READ_CHUNK = 1 << 16
_SANDBOX_WORKDIR = "/workspace"
_SANDBOX_AGENT = "/opt/lci-agent"
_PASSTHROUGH_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "TZ")


def _passthrough_env() -> dict[str, str]:
    """The engine's settings of the few variables sandboxes inherit (CPU tuning, time zone)."""
    return {k: os.environ[k] for k in _PASSTHROUGH_ENV if k in os.environ}


ExitCode = Callable[[], Awaitable[int | None]]


class SubprocessSandbox(Sandbox):
    """A launcher process and its agent, watched through a pidfd and non-blocking pipes."""

    def __init__(
        self,
        pid: int,
        exit_code: ExitCode,
        fds: dict[str, int],
        cgroup: Cgroup | None,
        oom_before: int,
    ) -> None:
        super().__init__()
        self._loop = asyncio.get_running_loop()
        self._cgroup = cgroup
        self._oom_before = oom_before
        self._pid = pid
        self._exit_code = exit_code
        self._requests = fds["requests"]
        self._pending = bytearray()
        self._writer_added = False
        self._readers = {fds["stdout"]: "stdout", fds["stderr"]: "stderr", fds["frames"]: "frames"}
        for fd in self._readers:
            os.set_blocking(fd, False)
            self._loop.add_reader(fd, self._readable, fd)
        os.set_blocking(self._requests, False)
        try:
            self._pidfd = os.pidfd_open(pid)
        except ProcessLookupError:  # it is already gone (a fork-server child reaped at once)
            self._pidfd = -1
            self._loop.call_soon(self._process_exited)
        else:
            self._loop.add_reader(self._pidfd, self._process_exited)

    @classmethod
    async def launch(
        cls, cfg: dict[str, object], cgroup: Cgroup | None, forkserver: ForkServer | None
    ) -> SubprocessSandbox:
        """Start a sandbox from the fork server when it runs, else with a fresh interpreter."""
        try:
            oom_before = cgroup.oom_kills() if cgroup else 0
            if forkserver is not None and forkserver.ready:
                with _Pipes() as pipes:
                    try:
                        pid, future = await forkserver.spawn(
                            {**cfg, "sandbox_agent_root": cfg["agent_root"]}, pipes.sandbox_ends
                        )
                    except ForkServerError:
                        pass  # a stray fork may hold these pipes: the fallback gets new ones
                    else:
                        exit_code = _forked_exit_code(forkserver, pid, future)
                        return cls(pid, exit_code, pipes.keep(), cgroup, oom_before)
            with _Pipes() as pipes:
                pid, exit_code = _popen(cfg, *pipes.sandbox_ends)
                return cls(pid, exit_code, pipes.keep(), cgroup, oom_before)
        except OSError as exc:  # out of fds or processes, a broken interpreter path, ...
            raise SandboxStartError(f"could not start the sandbox: {exc}") from exc

    def send_bytes(self, data: bytes) -> None:
        if self._requests < 0:
            return
        was_empty = not self._pending
        self._pending += data
        if was_empty:
            self._flush_requests()

    def _flush_requests(self) -> None:
        try:
            while self._pending:
                written = os.write(self._requests, self._pending)
                del self._pending[:written]
        except BlockingIOError:
            self._loop.add_writer(self._requests, self._flush_requests)
            self._writer_added = True
            return
        except OSError:  # the agent is gone; its exit will be reported through the pidfd
            self._pending.clear()
        if self._writer_added:
            self._writer_added = False
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_writer(self._requests)

    def interrupt(self) -> None:
        with contextlib.suppress(ProcessLookupError, OSError):
            signal.pidfd_send_signal(self._pidfd, signal.SIGINT)

    async def _terminate(self) -> None:
        # Killing the launcher takes the pid namespace down with it; the process group and the
        # cgroup sweeps cover the fallback modes, where there is no namespace to collapse.
        with contextlib.suppress(ProcessLookupError, OSError):
            signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._pid, signal.SIGKILL)
        if self._cgroup is not None:
            await asyncio.to_thread(self._cgroup.kill_all)

    def _readable(self, fd: int) -> None:
        self._read_available(fd, limit=4)

    def _read_available(self, fd: int, limit: int = 1 << 30) -> None:
        name = self._readers.get(fd)
        for _ in range(limit):
            try:
                data = os.read(fd, _READ_CHUNK)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._close_reader(fd)
                return
            if name == "frames":
                self._frames_received(data)
            elif name is not None:
                self._stream_received(name, data)  # type: ignore[arg-type]
            if len(data) < _READ_CHUNK:
                return  # the pipe is very likely empty now: spare the EAGAIN round

    def _close_reader(self, fd: int) -> None:
        if self._readers.pop(fd, None) is not None:
            self._loop.remove_reader(fd)
            os.close(fd)

    def _process_exited(self) -> None:
        if self._pidfd >= 0:
            self._loop.remove_reader(self._pidfd)
        self._background(self._finish_exit())

    async def _finish_exit(self) -> None:
        code = await self._exit_code()
        for fd in list(self._readers):
            self._read_available(fd)
            self._close_reader(fd)
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_writer(self._requests)
        os.close(self._requests)
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1
        self._requests = -1
        oom = (self._cgroup.oom_kills() - self._oom_before) if self._cgroup else 0
        if code == 137 and self._killing:  # 128 + SIGKILL, relayed by the supervising launcher
            code = -signal.SIGKILL
        self._exited(ExitInfo(code, oom_kills=oom))


class _Pipes:
    """The four pipes between the host and one agent. Leaving the `with` block closes the
    sandbox's ends (its process holds copies by then) and the host's, unless `keep()` took them."""

    def __init__(self) -> None:
        self._opened: list[int] = []
        requests_r, requests_w = self._pipe()
        frames_r, frames_w = self._pipe()
        stdout_r, stdout_w = self._pipe()
        stderr_r, stderr_w = self._pipe()
        self.sandbox_ends = [requests_r, frames_w, stdout_w, stderr_w]
        self._host_ends = {
            "requests": requests_w,
            "frames": frames_r,
            "stdout": stdout_r,
            "stderr": stderr_r,
        }
        self._kept = False

    def _pipe(self) -> tuple[int, int]:
        try:
            read_end, write_end = os.pipe2(os.O_CLOEXEC)
        except OSError:
            self._close(self._opened)
            raise
        self._opened += [read_end, write_end]
        return read_end, write_end

    def keep(self) -> dict[str, int]:
        self._kept = True
        return self._host_ends

    @staticmethod
    def _close(fds: list[int]) -> None:
        for fd in fds:
            os.close(fd)

    def __enter__(self) -> _Pipes:
        return self

    def __exit__(self, *_: object) -> None:
        self._close(self.sandbox_ends)
        if not self._kept:
            self._close(list(self._host_ends.values()))


def _popen(
    cfg: dict[str, object], req_r: int, frames_w: int, out_w: int, err_w: int
) -> tuple[int, ExitCode]:
    argv = bootstrap_argv(
        str(cfg["python"]),
        str(cfg["sandbox_agent_root"]),
        f"--requests-fd={req_r}",
        f"--frames-fd={frames_w}",
    )
    process = subprocess.Popen(
        [
            str(cfg["python"]),
            "-I",
            "-B",
            "-S",
            LAUNCHER,
            json.dumps(
                {
                    **cfg,
                    "argv": argv,
                    "host_pid": os.getpid(),
                    "requests_fd": req_r,
                    "frames_fd": frames_w,
                }
            ),
        ],
        stdin=subprocess.DEVNULL,
        stdout=out_w,
        stderr=err_w,
        pass_fds=(req_r, frames_w),
        start_new_session=True,
        cwd="/",
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
    )

    async def exit_code() -> int | None:
        return process.wait()  # it has exited: the pidfd said so

    return process.pid, exit_code


def _forked_exit_code(
    forkserver: ForkServer, pid: int, future: asyncio.Future[int | None]
) -> ExitCode:
    async def exit_code() -> int | None:
        try:  # the zygote reaps its children and reports their status a moment later
            return await asyncio.wait_for(asyncio.shield(future), 5)
        except TimeoutError:
            return None
        finally:
            forkserver.forget(pid)

    return exit_code


class SubprocessHost(SessionHost):
    """A session's uid, cgroup and workdir; each spawn starts a sandbox on them (forked from the
    fork server when it runs, else a fresh interpreter).

    A staged host (the warm pool's) builds its first sandbox for no session yet: `stage` starts it
    up to the point where only the session's own settings are missing, and `specialize` hands it
    a session's spec (limits, environment), so the pool serves sessions with any limits."""

    def __init__(
        self,
        probe: HostProbe,
        settings: Settings,
        session_id: str,
        spec: SessionSpec,
        uid: int | None,
        forkserver: ForkServer | None = None,
        staged: bool = False,
    ) -> None:
        self._forkserver = forkserver
        self.staged = staged
        self.warm: Sandbox | None = None  # started ahead of time by the warm pool
        self._probe = probe
        self._settings = settings
        self._spec = spec
        self._uid = uid
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
        env = _passthrough_env()
        tmp = "/tmp" if probe.namespaces else self.sandbox_workdir
        env |= {
            "PATH": f"{os.path.dirname(self._settings.sandbox_python)}:/usr/local/bin:/usr/bin:/bin",
            "HOME": self.sandbox_workdir,
            "TMPDIR": tmp,
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
            "MPLBACKEND": "Agg",
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
            "root_dir": self._root,
            "uid": self._uid,
            "gid": self._uid,
            "namespaces": probe.namespaces,
            "user_namespace": probe.namespaces and not probe.is_root,
            "network": limits.network,
            "cgroups": self._cgroup.procs_files if self._cgroup else [],
            "readonly": probe.readonly_paths,
            "symlinks": probe.symlinks,
            "tmp_mb": 64,
            "staged": self.staged,
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

    async def write_file(self, path: str, data: bytes) -> None:
        parts = wd.split_path(path, self.sandbox_workdir)
        await wd.off_loop(wd.write_file, self.workdir, parts, data, self._owner())

    async def read_file(self, path: str, max_bytes: int) -> bytes:
        parts = wd.split_path(path, self.sandbox_workdir)
        return await wd.off_loop(wd.read_file, self.workdir, parts, max_bytes)

    async def list_files(self) -> list[FileInfo]:
        return await wd.off_loop(wd.list_files, self.workdir)

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


class SubprocessBackend:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.probe = HostProbe.detect(settings, stage_agent(settings.state_dir))
        self._uids = count()
        self.forkserver: ForkServer | None = None
        self._forkserver_start: asyncio.Task[None] | None = None
        self._pool_spec = SessionSpec(limits=settings.limits)
        self.pool: WarmPool[Sandbox, SubprocessHost] | None = None
        if settings.subprocess_warm_pool > 0:
            self.pool = WarmPool(settings.subprocess_warm_pool, self._warm_slot, self._discard)
        if settings.forkserver:
            env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/nonexistent"}
            if self.probe.seed_dir is not None:
                env["MPLCONFIGDIR"] = str(self.probe.seed_dir / "matplotlib")
            env |= _passthrough_env()
            self.forkserver = ForkServer(
                settings.sandbox_python,
                self.probe.agent_root,
                settings.preload,
                self.probe.owner_dir / "zygote.log",
                env,
            )

    async def start(self) -> None:
        """Warm the fork server, then the pool, in the background: until they are ready, sessions
        start cold."""
        if self._forkserver_start is None:
            self._forkserver_start = asyncio.get_running_loop().create_task(self._warm())

    async def _warm(self) -> None:
        if self.forkserver is not None:
            try:
                info = await self.forkserver.start()
                log.info("fork server ready: %s", info)
            except (ForkServerError, OSError, TimeoutError) as exc:
                log.warning("fork server unavailable, sessions start cold: %s", exc)
        if self.pool is not None:
            self.pool.fill()

    async def warm_up(self, timeout: float = 120) -> bool:
        """Wait until the fork server runs (if enabled) and the pool is full; True when both are."""
        ready = await self.wait_forkserver(timeout) if self.forkserver is not None else True
        if self.pool is not None:
            ready = await self.pool.wait_full(timeout) and ready
        return ready

    async def _warm_slot(self) -> Slot[Sandbox, SubprocessHost]:
        host = await self._new_host(f"pool-{uuid.uuid4().hex[:10]}", self._pool_spec, staged=True)
        try:
            sandbox = await host.stage()
        except BaseException:
            await asyncio.shield(host.release())
            raise
        return Slot(sandbox, host)

    def _fits_pool(self, limits: Limits) -> bool:
        """Whether a staged sandbox can become a session with `limits`: everything can change at
        claim time but the network namespace and membership of the cpu cgroup."""
        pooled = self._pool_spec.limits
        return limits.network == pooled.network and (limits.cpus is None or pooled.cpus is not None)

    @staticmethod
    async def _discard(slot: Slot[Sandbox, SubprocessHost]) -> None:
        await slot.sandbox.kill()
        await slot.workdir.release()

    async def wait_forkserver(self, timeout: float = 120) -> bool:
        """Wait for the fork server; True when sessions now come from it."""
        if self._forkserver_start is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._forkserver_start), timeout)
        return self.forkserver is not None and self.forkserver.ready

    async def open(self, session_id: str, spec: SessionSpec) -> SubprocessHost:
        """A host for a new session: a staged one from the pool, specialized to `spec`, when the
        pool has one that fits; else a new one."""
        if self.pool is not None and self._fits_pool(spec.limits):
            slot = self.pool.claim(refill=False)
            if slot is not None:
                try:
                    await slot.workdir.specialize(spec)
                except BaseException as exc:
                    await asyncio.shield(self._discard(slot))
                    if not isinstance(exc, SandboxStartError):
                        raise
                    log.warning(
                        "a staged sandbox could not be specialized (%s); starting anew", exc
                    )
                else:
                    return slot.workdir
                finally:
                    self.pool.fill()
        return await self._new_host(session_id, spec)

    async def _new_host(
        self, session_id: str, spec: SessionSpec, staged: bool = False
    ) -> SubprocessHost:
        uid = None
        if self.probe.is_root:
            uid = self.settings.sandbox_uid_base + next(self._uids) % 1_000_000
        host = SubprocessHost(
            self.probe, self.settings, session_id, spec, uid, self.forkserver, staged
        )
        try:
            await asyncio.to_thread(host.prepare)
        except OSError as exc:
            await host.release()
            raise SandboxStartError(f"could not prepare the session's sandbox: {exc}") from exc
        if self.settings.require_isolation and host.isolation.notes:
            await host.release()
            raise SandboxStartError(
                "required isolation is missing: " + "; ".join(host.isolation.notes)
            )
        return host

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()
        if self._forkserver_start is not None:
            self._forkserver_start.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._forkserver_start
        if self.forkserver is not None:
            await self.forkserver.close()
        await asyncio.to_thread(self.probe.remove_owner_dir)

    def reap_orphans(self) -> int:
        return self.probe.reap_orphans()
