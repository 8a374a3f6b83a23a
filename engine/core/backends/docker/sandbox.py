"""A sandbox that is one container. The agent runs as the container's command (under docker-init)
and, as everywhere, multiplexes user output into `stream` frames on its one frame channel, which
here is the container's attach stream: requests written to stdin, frames read from stdout,
demultiplexed from Docker's stream format on the event loop (no thread blocks on it).

    interrupt  -> SIGINT to the container's init, which forwards it to the agent (state kept)
    terminate  -> force-remove the container: SIGKILL to its init takes every process down,
                  daemonized grandchildren included
    exit       -> the attach stream ends; the exit status and OOM flag are read, the container removed

Invariant: once `exited` resolves, the container is gone (unless the daemon stopped answering, in
which case the reaper removes it later).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from dataclasses import dataclass

from engine.core.backends.docker.api import DockerAPI
from engine.core.backends.docker.demux import StreamDemux
from engine.core.sandbox import ExitInfo, Sandbox
from engine.errors import BackendUnavailable, LCIError, SandboxStartError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DaemonLost(ExitInfo):
    """The sandbox's fate is unknown because the Docker daemon stopped answering."""

    detail: str = ""

    def describe(self) -> str:
        return f"the Docker daemon stopped responding ({self.detail})"


class _Demux(StreamDemux):
    def __init__(self, sandbox: DockerSandbox) -> None:
        super().__init__()
        self._sandbox = sandbox

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._sandbox._transport = transport
        self._sandbox._connected = True

    def stdout(self, payload: bytes) -> None:
        self._sandbox._frames_received(payload)

    def stderr(self, payload: bytes) -> None:
        self._sandbox._stream_received("stderr", payload)

    def connection_lost(self, exc: Exception | None) -> None:
        self._sandbox._attach_closed()


class DockerSandbox(Sandbox):
    """One running container and its agent."""

    def __init__(self, api: DockerAPI, container_id: str) -> None:
        super().__init__()
        self.api = api
        self.container_id = container_id
        self._transport: asyncio.Transport | None = None
        self._connected = False
        self._signalling = 0
        self._held = bytearray()

    @classmethod
    async def start(cls, api: DockerAPI, container_id: str, ready_timeout: float) -> DockerSandbox:
        """Attach to a created container, start it, and return once its agent said hello. On any
        failure (or cancellation) the container is removed before the error propagates."""
        sandbox: DockerSandbox | None = None
        try:
            sock = await asyncio.to_thread(api.attach, container_id)
            sandbox = cls(api, container_id)
            await _connect(sandbox, sock)
            await asyncio.to_thread(api.start, container_id)
            await sandbox.wait_ready(ready_timeout)
        except BaseException:
            if sandbox is not None and sandbox._connected:
                await asyncio.shield(sandbox.kill())  # removes it, and lets the exit settle
            else:
                await asyncio.shield(_remove_quietly(api, container_id))
            raise
        return sandbox

    # -- the seam --------------------------------------------------------------------------------
    def send_bytes(self, data: bytes) -> None:
        if self._signalling:
            # A signal is still on its way through the daemon: hold requests back until it has
            # been delivered, so a late SIGINT cannot land in the cell sent after it.
            self._held += data
        elif self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def _pause_reading(self, paused: bool) -> None:
        if self._transport is not None and not self._transport.is_closing():
            if paused:
                self._transport.pause_reading()
            else:
                self._transport.resume_reading()

    def interrupt(self) -> None:
        self._background(self._signal("SIGINT"))
        # Counted now, not when the task first runs: a cell sent before then must be held back
        # too, or the SIGINT could land in it. `_signal` undoes the count once delivered (counted
        # after scheduling, so a failure to schedule cannot hold requests back forever).
        self._signalling += 1

    async def _terminate(self) -> None:
        try:
            await asyncio.to_thread(self.api.remove, self.container_id)
        except LCIError as exc:
            log.warning("could not remove container %s: %s", self.container_id[:12], exc)
        finally:
            if self._transport is not None:
                self._transport.close()  # the exit follows from connection_lost

    # -- transport events ------------------------------------------------------------------------
    def _attach_closed(self) -> None:
        self._transport = None
        self._background(self._collect_exit())

    async def _collect_exit(self) -> None:
        if self._killing:
            self._exited(ExitInfo(-signal.SIGKILL))
            return
        try:
            code, oom = await asyncio.to_thread(self.api.exit_status, self.container_id)
        except BackendUnavailable as exc:
            self._exited(DaemonLost(None, detail=exc.message))
            return
        except LCIError:
            code, oom = None, False  # removed under us (by kill() racing this): nothing to learn
        await _remove_quietly(self.api, self.container_id)
        self._exited(ExitInfo(code, oom_kills=int(oom)))

    async def _signal(self, name: str) -> None:
        """Deliver `name`; the caller has already counted it in `_signalling`."""
        try:
            await asyncio.to_thread(self.api.signal, self.container_id, name)
        except LCIError as exc:
            log.warning("could not signal container %s: %s", self.container_id[:12], exc)
        finally:
            self._signalling -= 1
            if not self._signalling and self._held:
                held, self._held = bytes(self._held), bytearray()
                self.send_bytes(held)


async def _connect(sandbox: DockerSandbox, sock: socket.socket) -> None:
    try:
        await asyncio.get_running_loop().connect_accepted_socket(lambda: _Demux(sandbox), sock=sock)
    except BaseException as exc:
        sock.close()
        if isinstance(exc, OSError):
            raise SandboxStartError(f"could not read the container's attach stream: {exc}") from exc
        raise


async def _remove_quietly(api: DockerAPI, container_id: str) -> None:
    try:
        await asyncio.to_thread(api.remove, container_id)
    except LCIError as exc:
        log.warning("could not remove container %s: %s", container_id[:12], exc)
