"""A docker session's files, read and written through the Docker daemon only.

The workdir is a volume the engine cannot see, held mounted by the session's keeper container (see
`host.py`). In the keeper runs the file helper (`lci_agent.files`, started with `docker exec` as the
sandbox user, and kept running): it walks the volume fd by fd with O_NOFOLLOW, so it follows no
link and opens no special file, and can reach nothing the user's code could not. Files travel as
tar streams in chunks over the exec connection, checked on both ends (`archive.py` here), never
held whole.

If the connection breaks (the helper, the keeper or the daemon went away), the operation fails and
the next one starts a new helper; a daemon that does not answer is BackendUnavailable.

Blocking: the host runs these methods in a thread, one operation at a time per session.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from engine.core.agent_files import bootstrap_argv
from engine.core.backends.docker.api import DockerAPI
from engine.core.backends.docker.archive import file_archive, read_single_file
from engine.core.backends.docker.spec import SANDBOX_AGENT, SANDBOX_WORKDIR
from engine.core.workdir import MAX_LISTED, split_path
from engine.errors import FileAccessError, FileNotFound, LCIError, SandboxError
from engine.models import MIB, FileInfo

T = TypeVar("T")
_LENGTH = struct.Struct(">I")
_FRAME = struct.Struct(">BxxxI")  # Docker's stream framing: stream id, payload length
_STDOUT, _STDERR = 1, 2
_MAX_LISTING = 16 * MIB
_MAX_TRAILER = 1 << 16
IO_TIMEOUT_S = 120.0


class HelperLost(Exception):
    """The connection to the file helper broke."""


class _Connection:
    """One running file helper: requests written to its stdin, its stdout demultiplexed from
    Docker's stream framing (stderr kept, bounded, for the error message)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buffer = bytearray()
        self._offset = 0
        self.stderr = bytearray()

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise HelperLost(str(exc)) from exc

    def _recv_exact(self, size: int) -> bytes:
        parts, left = [], size
        while left:
            try:
                data = self.sock.recv(min(left, 1 << 20))
            except OSError as exc:
                raise HelperLost(str(exc)) from exc
            if not data:
                raise HelperLost("the connection ended")
            parts.append(data)
            left -= len(data)
        return b"".join(parts)

    def _fill(self) -> None:
        stream, size = _FRAME.unpack(self._recv_exact(_FRAME.size))
        payload = self._recv_exact(size)
        if stream == _STDOUT:
            if self._offset > MIB:
                del self._buffer[: self._offset]
                self._offset = 0
            self._buffer += payload
        elif stream == _STDERR and len(self.stderr) < 4096:
            self.stderr += payload

    def read(self, size: int) -> bytes:
        while len(self._buffer) - self._offset < size:
            self._fill()
        data = bytes(self._buffer[self._offset : self._offset + size])
        self._offset += size
        return data

    def readline(self) -> bytes:
        while (end := self._buffer.find(b"\n", self._offset)) < 0:
            if len(self._buffer) - self._offset > _MAX_TRAILER:
                raise HelperLost("the helper's reply is malformed")
            self._fill()
        return self.read(end + 1 - self._offset)

    def chunks(self) -> Iterator[bytes]:
        """The reply's payload, chunk by chunk, up to its end marker."""
        while size := _LENGTH.unpack(self.read(_LENGTH.size))[0]:
            yield self.read(size)


class VolumeFiles:
    """The file API of one session's volume, through a file helper in its keeper."""

    def __init__(
        self, api: DockerAPI, keeper_id: str, disk_mb: int, owner: tuple[int, int]
    ) -> None:
        self.api = api
        self.keeper_id = keeper_id
        self.disk_mb = disk_mb
        self.owner = owner
        self._lock = threading.Lock()
        self._connection: _Connection | None = None

    def write(self, path: str, data: bytes) -> None:
        parts = split_path(path, SANDBOX_WORKDIR)
        if len(data) > self.disk_mb * MIB:
            raise FileAccessError(f"{path!r} is larger than the workdir ({self.disk_mb} MB)")
        request = {"op": "write", "path": "/".join(parts), "max": len(data)}
        self._request(request, file_archive("file", data, self.owner), _drained, path)

    def read(self, path: str, max_bytes: int) -> bytes:
        parts = split_path(path, SANDBOX_WORKDIR)
        request = {"op": "fetch", "path": "/".join(parts), "max": max_bytes}
        return self._request(request, (), lambda c: read_single_file(c, path, max_bytes), path)

    def delete(self, path: str) -> None:
        parts = split_path(path, SANDBOX_WORKDIR)
        self._request({"op": "delete", "path": "/".join(parts)}, (), _drained, path)

    def list(self) -> list[FileInfo]:
        output = self._request({"op": "list", "limit": MAX_LISTED}, (), _listing, "the workdir")
        try:
            found = [FileInfo(path=p, size=s, modified_at=m) for p, s, m in json.loads(output)]
        except (ValueError, TypeError) as exc:
            raise FileAccessError(f"the workdir could not be listed: {exc}") from exc
        return sorted(found, key=lambda f: f.path)

    def tree_op(self, op: str, path: str, args: dict[str, Any]) -> Any:
        """A tree operation (`engine/agent/tree.py`) run by the helper; its JSON result."""
        request = {**args, "op": op, "path": path}
        output = self._request(request, (), _listing, path or "the workdir")
        try:
            return json.loads(output)
        except ValueError as exc:
            raise FileAccessError(f"malformed reply to {op!r}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _request(
        self,
        request: dict[str, Any],
        payload: Iterable[bytes],
        consume: Callable[[Iterator[bytes]], T],
        what: str,
    ) -> T:
        with self._lock:
            try:
                connection = self._connect()
                out = [json.dumps(request).encode() + b"\n"]
                for chunk in payload:
                    out.append(_LENGTH.pack(len(chunk)) + chunk if chunk else b"")
                    if sum(map(len, out)) >= MIB:
                        connection.send(b"".join(out))
                        out.clear()
                connection.send(b"".join([*out, _LENGTH.pack(0)]))
                chunks = connection.chunks()
                failure: FileAccessError | None = None
                try:
                    result = consume(chunks)
                except FileAccessError as exc:  # the trailer may say why, more precisely
                    failure = exc
                for _ in chunks:  # the rest of the reply, whatever the consumer left
                    pass
                trailer = json.loads(connection.readline())
            except (HelperLost, ValueError, TimeoutError) as exc:
                self._drop()
                self.api.ping()  # BackendUnavailable when the daemon is the one gone
                raise SandboxError(
                    f"the session's file helper stopped ({exc}); the next file operation "
                    "starts a new one"
                ) from exc
        if not trailer.get("ok"):
            raise self._error(trailer, what)
        if failure is not None:
            raise failure
        return result

    def _error(self, trailer: dict[str, Any], what: str) -> LCIError:
        message = str(trailer.get("error", "refused"))
        if trailer.get("status") == "missing":
            return FileNotFound(message)
        if trailer.get("status") == "full":
            return FileAccessError(
                f"cannot write {what!r}: no space left in the workdir ({self.disk_mb} MB)"
            )
        return FileAccessError(message)

    def _connect(self) -> _Connection:
        if self._connection is None:
            argv = bootstrap_argv("python3", SANDBOX_AGENT, SANDBOX_WORKDIR, module="files")
            user = f"{self.owner[0]}:{self.owner[1]}"
            sock = self.api.exec_socket(self.keeper_id, argv, user)
            sock.settimeout(IO_TIMEOUT_S)  # blocking, but a daemon that hangs is an error
            self._connection = _Connection(sock)
        return self._connection

    def _drop(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(OSError):
                self._connection.sock.close()
            self._connection = None


def _drained(chunks: Iterator[bytes]) -> None:
    for _ in chunks:
        pass


def _listing(chunks: Iterator[bytes]) -> bytes:
    output = bytearray()
    for chunk in chunks:
        output += chunk
        if len(output) > _MAX_LISTING:
            raise FileAccessError("the workdir listing is too large")
    return bytes(output)
