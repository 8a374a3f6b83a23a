"""Host side of the fork server: starts the zygote (see `standalone/zygote.py`), asks it for sandboxes, and
relays their exit statuses (the zygote, not the host, is their parent).

A sandbox from the fork server starts in milliseconds with numpy, pandas and matplotlib already
imported, and shares those pages with the zygote. If the zygote cannot start, stops answering, or
dies, the backend starts sandboxes with a fresh interpreter from then on; the sandboxes it had
forked die with it (their sessions see a crash and restart).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

from engine.agent.protocol import FrameDecoder, FrameError, encode_frame

log = logging.getLogger(__name__)
_STANDALONE = Path(__file__).with_name("standalone")
_ZYGOTE = str(_STANDALONE / "zygote.py")
LAUNCHER = str(_STANDALONE / "launcher.py")  # the sandbox builder, run or loaded


class ForkServerError(Exception):
    pass


class ForkServer:
    def __init__(
        self, python: str, agent_root: Path, preload: list[str], log_path: Path, env: dict[str, str]
    ) -> None:
        self._python = python
        self._agent_root = agent_root
        self._preload = preload
        self._log_path = log_path
        self._env = env
        self._socket: socket.socket | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._decoder = FrameDecoder()
        self._hello: asyncio.Future[dict[str, Any]] | None = None
        self._spawned: asyncio.Future[int] | None = None
        self._spawn_id = 0
        self.spawn_timeout_s = 10.0
        self._exits: dict[int, asyncio.Future[int | None]] = {}
        self._lock = asyncio.Lock()
        self.info: dict[str, Any] = {}

    @property
    def ready(self) -> bool:
        return self._hello is not None and self._hello.done() and self._socket is not None

    async def start(self, timeout: float = 120.0) -> dict[str, Any]:
        """Start the zygote and wait until it has imported everything; returns its hello."""
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self._hello = loop.create_future()
        self._decoder = FrameDecoder()  # a restart must not see the dead one's partial frame
        with open(self._log_path, "ab") as log_file:
            self._process = subprocess.Popen(
                [
                    self._python,
                    "-I",
                    "-B",
                    "-u",
                    _ZYGOTE,
                    str(theirs.fileno()),
                    str(self._agent_root),
                    LAUNCHER,
                    json.dumps(self._preload),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                pass_fds=(theirs.fileno(),),
                start_new_session=True,
                cwd="/",
                env=self._env,
            )
        theirs.close()
        ours.setblocking(False)
        self._socket = ours
        loop.add_reader(ours.fileno(), self._readable)
        try:
            self.info = await asyncio.wait_for(asyncio.shield(self._hello), timeout)
        except BaseException:  # timed out, failed, or cancelled: leave no zygote behind
            await asyncio.shield(self.close())
            raise
        if self.info.get("threads") != 1:
            await self.close()
            raise ForkServerError(
                f"the zygote runs {self.info.get('threads')} threads; "
                "forking it would hand sandboxes broken thread pools"
            )
        return self.info

    async def spawn(
        self, config: dict[str, Any], fds: list[int]
    ) -> tuple[int, asyncio.Future[int | None]]:
        """Fork a sandbox with `config`, handing it `fds` (requests, frames, stdout, stderr).
        Returns its pid and a future of its exit code (None if the zygote died first). Raises
        ForkServerError when the zygote is not running or fails to answer (it is then stopped:
        a late fork must not hold `fds` next to whatever the caller starts instead)."""
        async with self._lock:  # one spawn in flight: its fds travel with its own message
            if not self.ready or self._socket is None:
                raise ForkServerError("the fork server is not running")
            self._spawn_id += 1
            self._spawned = asyncio.get_running_loop().create_future()
            message = encode_frame({"type": "spawn", "id": self._spawn_id})
            # The config travels in a memfd: any size, and nothing blocks on a pipe no one reads
            # yet. Only the sandbox reads it, so no session's settings linger in the zygote.
            config_fd = os.memfd_create("lci-sandbox-config", os.MFD_CLOEXEC)
            try:
                with open(config_fd, "wb", closefd=False) as handle:
                    handle.write(json.dumps(config).encode())
                os.lseek(config_fd, 0, os.SEEK_SET)
                self._socket.setblocking(True)
                try:
                    socket.send_fds(self._socket, [message], [config_fd, *fds])
                finally:
                    self._socket.setblocking(False)
                pid = await asyncio.wait_for(self._spawned, self.spawn_timeout_s)
            except (OSError, TimeoutError) as exc:
                reason = f"the fork server failed to spawn a sandbox ({exc!r})"
                self._spawned = None  # this call reports the failure itself
                self._lost(reason)
                await self.close()
                raise ForkServerError(reason) from exc
            finally:
                os.close(config_fd)
        return pid, self._exit_future(pid)

    def _exit_future(self, pid: int) -> asyncio.Future[int | None]:
        if pid not in self._exits:
            self._exits[pid] = asyncio.get_running_loop().create_future()
        return self._exits[pid]

    def forget(self, pid: int) -> None:
        self._exits.pop(pid, None)

    def _readable(self) -> None:
        assert self._socket is not None
        try:
            data = self._socket.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._lost("the fork server exited")
            return
        try:
            frames = self._decoder.feed(data)
        except FrameError as exc:
            self._lost(f"the fork server sent garbage: {exc}")
            return
        for frame in frames:
            self._dispatch(frame)

    def _dispatch(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "hello" and self._hello is not None and not self._hello.done():
            self._hello.set_result(frame)
        elif (
            kind == "spawned"
            and frame.get("id") == self._spawn_id
            and self._spawned is not None
            and not self._spawned.done()
        ):
            self._spawned.set_result(int(frame["pid"]))
        elif kind == "exited":
            future = self._exit_future(int(frame["pid"]))
            if not future.done():
                future.set_result(int(frame["code"]))

    def _lost(self, reason: str) -> None:
        log.warning("%s; new sandboxes start without it", reason)
        self._detach()
        error = ForkServerError(reason)
        for waiter in (self._hello, self._spawned):
            if waiter is not None and not waiter.done():
                waiter.set_exception(error)
        for exit_code in self._exits.values():
            if not exit_code.done():
                exit_code.set_result(None)

    def _detach(self) -> None:
        if self._socket is not None:
            with contextlib.suppress(ValueError, OSError):
                asyncio.get_running_loop().remove_reader(self._socket.fileno())
            self._socket.close()
            self._socket = None

    async def close(self) -> None:
        self._detach()
        process, self._process = self._process, None
        if process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await asyncio.to_thread(process.wait)
