"""A docker session's process service: `docker exec` of the agent's process service in the session's
container, as its user, so commands share the container's limits, network, filters and working
directory. Requests go to the exec's stdin; its stdout (frames) and stderr come back multiplexed in
Docker's stream format, read on the event loop. Removing the container ends it."""

from __future__ import annotations

import asyncio

from engine.core.agent_files import bootstrap_argv
from engine.core.backends.docker.api import DockerAPI
from engine.core.backends.docker.demux import StreamDemux
from engine.core.backends.docker.spec import SANDBOX_AGENT
from engine.core.process_channel import ProcessChannel
from engine.errors import SandboxError

_STDERR_KEPT = 4096


async def open_channel(api: DockerAPI, container_id: str, user: str) -> DockerChannel:
    argv = bootstrap_argv("python3", SANDBOX_AGENT, module="processes")
    sock = await asyncio.to_thread(api.exec_socket, container_id, argv, user)
    channel = DockerChannel()
    try:
        await asyncio.get_running_loop().connect_accepted_socket(lambda: _Demux(channel), sock=sock)
    except OSError as exc:
        sock.close()
        raise SandboxError(f"could not reach the process service: {exc}") from exc
    return channel


class DockerChannel(ProcessChannel):
    def __init__(self) -> None:
        super().__init__()
        self.transport: asyncio.Transport | None = None
        self.stderr = bytearray()
        self.closed = asyncio.Event()

    def send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    async def close(self) -> None:
        if self.transport is not None:
            self.transport.close()  # the service reads EOF, kills its commands and exits
        await self.closed.wait()


class _Demux(StreamDemux):
    def __init__(self, channel: DockerChannel) -> None:
        super().__init__()
        self._channel = channel

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._channel.transport = transport

    def stdout(self, payload: bytes) -> None:
        self._channel._received(payload)

    def stderr(self, payload: bytes) -> None:
        kept = self._channel.stderr
        kept += payload
        del kept[: max(len(kept) - _STDERR_KEPT, 0)]

    def connection_lost(self, exc: Exception | None) -> None:
        channel = self._channel
        channel.transport = None
        detail = channel.stderr.decode("utf-8", "replace").strip()[-500:]
        channel._end("the process service ended" + (f": {detail}" if detail else ""))
        channel.closed.set()
