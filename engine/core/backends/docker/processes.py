"""A docker session's process service: `docker exec` of the agent's process service in the session's
container, as its user, so commands share the container's limits, network, filters and working
directory. Requests go to the exec's stdin; its stdout (frames) and stderr come back multiplexed in
Docker's stream format, read on the event loop. Removing the container ends it."""

from __future__ import annotations

import asyncio
import struct

from engine.core.agent_files import bootstrap_argv
from engine.core.backends.docker.api import DockerAPI
from engine.core.backends.docker.spec import SANDBOX_AGENT
from engine.core.process_channel import ProcessChannel
from engine.errors import SandboxError

_HEADER = struct.Struct(">BxxxI")  # stream id (1 stdout, 2 stderr), payload length
_STDOUT, _STDERR = 1, 2
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


class _Demux(asyncio.Protocol):
    def __init__(self, channel: DockerChannel) -> None:
        self._channel = channel
        self._buffer = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._channel.transport = transport

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        while len(buffer) >= _HEADER.size:
            stream, size = _HEADER.unpack_from(buffer)
            end = _HEADER.size + size
            if len(buffer) < end:
                return
            payload = bytes(buffer[_HEADER.size : end])
            del buffer[:end]
            if stream == _STDOUT:
                self._channel._received(payload)
            elif stream == _STDERR:
                kept = self._channel.stderr
                kept += payload
                del kept[: max(len(kept) - _STDERR_KEPT, 0)]

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        channel = self._channel
        channel.transport = None
        detail = channel.stderr.decode("utf-8", "replace").strip()[-500:]
        channel._end("the process service ended" + (f": {detail}" if detail else ""))
        channel.closed.set()
