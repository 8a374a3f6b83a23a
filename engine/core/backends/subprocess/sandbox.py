"""A subprocess sandbox: a launcher process tree (see `standalone/launcher.py`) and its agent, started from the
fork server or a fresh interpreter, watched through a pidfd and non-blocking pipes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Awaitable, Callable

from engine.core.agent_files import bootstrap_argv
from engine.core.backends.subprocess.cgroups import Cgroup
from engine.core.backends.subprocess.forkserver import LAUNCHER, ForkServer, ForkServerError
from engine.core.sandbox import ExitInfo, Sandbox
from engine.errors import SandboxStartError

_READ_CHUNK = 1 << 16

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
        self.agent_root: str | None = None  # where the agent is inside, when not where cfg says
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

    @property
    def pid(self) -> int:
        """The launcher's process id (its descendants are the sandbox)."""
        return self._pid

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
                        sandbox = cls(pid, exit_code, pipes.keep(), cgroup, oom_before)
                        sandbox.agent_root = str(cfg["agent_root"])
                        return sandbox
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

    def _pause_reading(self, paused: bool) -> None:
        for fd, name in self._readers.items():
            if name == "frames":
                if paused:
                    self._loop.remove_reader(fd)
                else:
                    self._loop.add_reader(fd, self._readable, fd)

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
    cfg: dict[str, object],
    req_r: int,
    frames_w: int,
    out_w: int,
    err_w: int,
    *,
    module: str = "entry",
) -> tuple[int, ExitCode]:
    """Start the launcher for `cfg`, whose worker runs the agent module `module`."""
    argv = bootstrap_argv(
        str(cfg["python"]),
        str(cfg["sandbox_agent_root"]),
        f"--requests-fd={req_r}",
        f"--frames-fd={frames_w}",
        module=module,
    )
    # The config (the session's environment, with whatever secrets it holds, among it) travels in
    # a memfd, never on the command line, which every local user can read in /proc/*/cmdline.
    config = {
        **cfg,
        "argv": argv,
        "host_pid": os.getpid(),
        "requests_fd": req_r,
        "frames_fd": frames_w,
    }
    config_fd = os.memfd_create("lci-sandbox-config", os.MFD_CLOEXEC)
    try:
        _write_all(config_fd, json.dumps(config).encode())
        os.lseek(config_fd, 0, os.SEEK_SET)
        process = subprocess.Popen(
            [str(cfg["python"]), "-I", "-B", "-S", LAUNCHER, f"--config-fd={config_fd}"],
            stdin=subprocess.DEVNULL,
            stdout=out_w,
            stderr=err_w,
            pass_fds=(req_r, frames_w, config_fd),
            start_new_session=True,
            cwd="/",
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
        )
    finally:
        os.close(config_fd)

    async def exit_code() -> int | None:
        return process.wait()  # it has exited: the pidfd said so

    return process.pid, exit_code


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


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
