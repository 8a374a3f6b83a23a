"""A subprocess session's process service: started by the launcher joined to the running sandbox
(its cgroups, namespaces, root, uid and filters; see `standalone/launcher.py`), spoken to through
two pipes. Killing the sandbox kills it; closing the channel ends it too."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from typing import Any

from engine.core.backends.subprocess.sandbox import ExitCode, _Pipes, _popen
from engine.core.process_channel import ProcessChannel
from engine.errors import SandboxError

_READ_CHUNK = 1 << 16
_STDERR_KEPT = 4096
_CLOSE_GRACE_S = 3.0


def sandbox_init(launcher_pid: int) -> int:
    """The pid of the sandbox's init: the launcher's child in the sandbox's namespaces. With a
    network the launcher has forked its slirp4netns first, which stays in the host's."""
    try:
        with open(f"/proc/{launcher_pid}/task/{launcher_pid}/children") as handle:
            children = [int(pid) for pid in handle.read().split()]
    except OSError as exc:
        raise SandboxError(f"the sandbox is not running ({exc})") from exc
    inits = [pid for pid in children if _name(pid) != "slirp4netns"]
    if not inits:
        raise SandboxError("the sandbox is not running")
    return inits[-1]


def _name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as handle:
            return handle.read().strip()
    except OSError:
        return ""


async def open_channel(cfg: dict[str, Any]) -> SubprocessChannel:
    """Start the process service described by `cfg` (the sandbox's config with `join` set)."""
    try:
        with _Pipes() as pipes:
            pid, exit_code = _popen(cfg, *pipes.sandbox_ends, module="processes")
            return SubprocessChannel(pid, exit_code, pipes.keep())
    except OSError as exc:
        raise SandboxError(f"could not start the process service: {exc}") from exc


class SubprocessChannel(ProcessChannel):
    def __init__(self, pid: int, exit_code: ExitCode, fds: dict[str, int]) -> None:
        super().__init__()
        self._loop = asyncio.get_running_loop()
        self._pid = pid
        self._exit_code = exit_code
        self._requests = fds["requests"]
        self._pending = bytearray()
        self._stderr = bytearray()
        self._readers = {fds["frames"]: "frames", fds["stderr"]: "stderr", fds["stdout"]: "stdout"}
        for fd in self._readers:
            os.set_blocking(fd, False)
            self._loop.add_reader(fd, self._readable, fd)
        os.set_blocking(self._requests, False)
        self._pidfd = os.pidfd_open(pid)
        self._loop.add_reader(self._pidfd, self._process_exited)
        self._done = asyncio.Event()
        self._finishing: asyncio.Future[None] | None = None

    def send(self, data: bytes) -> None:
        if self._requests < 0:
            return
        was_empty = not self._pending
        self._pending += data
        if was_empty:
            self._flush()

    def _flush(self) -> None:
        try:
            while self._pending:
                del self._pending[: os.write(self._requests, self._pending)]
        except BlockingIOError:
            self._loop.add_writer(self._requests, self._flush)
            return
        except OSError:
            self._pending.clear()
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_writer(self._requests)

    async def close(self) -> None:
        """End of input: the service kills its commands and exits, and its launcher reaps it (a
        launcher killed first would leave it a zombie for the host's init). One that does not
        end within a few seconds is killed."""
        if self._requests >= 0:
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_writer(self._requests)
            os.close(self._requests)
            self._requests = -1
        try:
            await asyncio.wait_for(self._done.wait(), _CLOSE_GRACE_S)
            return
        except TimeoutError:
            pass
        if self._pidfd >= 0:
            with contextlib.suppress(ProcessLookupError, OSError):
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._pid, signal.SIGKILL)  # the fallback modes, without a pid namespace
        await self._done.wait()

    def _readable(self, fd: int) -> bool:
        """Read once; whether there may be more."""
        name = self._readers.get(fd)
        try:
            data = os.read(fd, _READ_CHUNK)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        if not data:
            self._loop.remove_reader(fd)
            self._readers.pop(fd)
            os.close(fd)
            return False
        if name == "frames":
            self._received(data)
        elif name == "stderr":
            self._stderr += data
            del self._stderr[: max(len(self._stderr) - _STDERR_KEPT, 0)]
        return True

    def _process_exited(self) -> None:
        self._loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        self._pidfd = -1
        self._finishing = asyncio.ensure_future(self._finish())

    async def _finish(self) -> None:
        code = await self._exit_code()
        for fd in list(self._readers):
            for _ in range(256):  # what the pipes still hold; a stray holder cannot keep us here
                if fd not in self._readers or not self._readable(fd):
                    break
        for fd in list(self._readers):
            self._loop.remove_reader(fd)
            self._readers.pop(fd)
            os.close(fd)
        if self._requests >= 0:
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_writer(self._requests)
            os.close(self._requests)
            self._requests = -1
        detail = self._stderr.decode("utf-8", "replace").strip()[-500:]
        self._end(
            f"the process service exited with status {code}" + (f": {detail}" if detail else "")
        )
        self._done.set()
