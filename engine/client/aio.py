"""The async client: `AsyncClient` and the `AsyncRemoteSession`s it creates or attaches to.

The blocking client, `sync.py`, is generated from this file by `.ci/unasync.py`: edit this one,
then run `python .ci/unasync.py` (a unit test fails while the two differ)."""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Callable, Mapping
from types import TracebackType
from typing import Any, Unpack

import httpx

from engine.callbacks import ItemCallback, OutputCallbackArgs, OutputCallbacks
from engine.client.wire import (
    DEFAULT_URL,
    CommandStreamReader,
    SSEReader,
    WatchReader,
    check,
    execute_body,
    file_url,
    headers,
    session_body,
    translated,
)
from engine.command_models import CommandInfo, CommandResult
from engine.models import (
    Execution,
    FileEntry,
    FileEvent,
    FileInfo,
    ForkResult,
    SessionInfo,
    SignedUrl,
    SnapshotInfo,
)

TextCallback = Callable[[str], None]


class AsyncClient:
    """`lci serve`'s session API. `api_key` defaults to `LCI_API_KEY`. A server that cannot be
    reached, or drops the connection, raises `engine.errors.ServerUnavailable`."""

    def __init__(
        self, base_url: str = DEFAULT_URL, *, api_key: str | None = None, timeout: float = 600
    ) -> None:
        self.http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), headers=headers(api_key), timeout=timeout
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self.http.aclose()

    async def create_session(
        self,
        *,
        limits: Mapping[str, Any] | None = None,
        backend: str | None = None,
        env: Mapping[str, str] | None = None,
        image: str | None = None,
    ) -> AsyncRemoteSession:
        """Start a session on the server; `limits` changes only the fields given."""
        body = session_body(limits, backend, env, image)
        with translated(self.http):
            response = check(await self.http.post("/v1/sessions", json=body))
        return AsyncRemoteSession(self, SessionInfo.model_validate_json(response.content))

    async def session(self, session_id: str) -> AsyncRemoteSession:
        """Attach to a live session (SessionNotFound if there is none)."""
        return AsyncRemoteSession(self, await self._info(session_id))

    async def list_sessions(self) -> builtins.list[SessionInfo]:
        with translated(self.http):
            data = check(await self.http.get("/v1/sessions")).json()
        return [SessionInfo.model_validate(item) for item in data["sessions"]]

    async def _info(self, session_id: str) -> SessionInfo:
        with translated(self.http):
            response = check(await self.http.get(f"/v1/sessions/{session_id}"))
        return SessionInfo.model_validate_json(response.content)


class AsyncRemoteSession:
    """A session held by the server: the same calls as an in-process `Session`, over HTTP."""

    def __init__(self, client: AsyncClient, info: SessionInfo) -> None:
        self.client = client
        self.id = info.id
        self._info = info
        self.commands = AsyncRemoteCommands(client, info.id)
        self.tree = AsyncRemoteTree(client, info.id)

    async def info(self) -> SessionInfo:
        self._info = await self.client._info(self.id)
        return self._info

    async def execute(
        self,
        code: str,
        *,
        timeout_s: float | None = None,
        wait: bool = False,
        **callbacks: Unpack[OutputCallbackArgs],
    ) -> Execution:
        """Run one cell; with any output callback, its output streams as it happens (SSE)."""
        output = OutputCallbacks(**callbacks)
        listener = output.item_callback()
        url = f"/v1/sessions/{self.id}/execute"
        http = self.client.http
        if listener is None:
            body = execute_body(code, timeout_s, wait, stream=False)
            with translated(http):
                response = check(await http.post(url, json=body))
            return output.finished(Execution.model_validate_json(response.content))
        reader = SSEReader()
        body = execute_body(code, timeout_s, wait, stream=True)
        with translated(http):
            await self._stream(url, body, reader, listener)
        return output.finished(reader.result())

    async def _stream(
        self, url: str, body: dict[str, Any], reader: SSEReader, listener: ItemCallback
    ) -> None:
        async with self.client.http.stream("POST", url, json=body) as response:
            if response.status_code >= 400:
                await response.aread()
                check(response)
            async for line in response.aiter_lines():
                for item in reader.line(line):
                    listener(item)

    async def write_file(self, path: str, data: bytes) -> FileInfo:
        files = {"file": (path.rsplit("/", 1)[-1] or "file", data)}
        url = f"/v1/sessions/{self.id}/files"
        with translated(self.client.http):
            response = check(await self.client.http.post(url, files=files, data={"path": path}))
        return FileInfo.model_validate_json(response.content)

    async def read_file(self, path: str) -> bytes:
        url = f"/v1/sessions/{self.id}/files/{file_url(path)}"
        with translated(self.client.http):
            return check(await self.client.http.get(url)).content

    async def list_files(self) -> list[FileInfo]:
        with translated(self.client.http):
            data = check(await self.client.http.get(f"/v1/sessions/{self.id}/files")).json()
        return [FileInfo.model_validate(item) for item in data["files"]]

    async def snapshot(self) -> SnapshotInfo:
        """Keep the interpreter's whole state and the working directory (docs/snapshots.md)."""
        return await self._snapshot_post("snapshots")

    async def list_snapshots(self) -> list[SnapshotInfo]:
        with translated(self.client.http):
            reply = check(await self.client.http.get(f"/v1/sessions/{self.id}/snapshots"))
        return [SnapshotInfo.model_validate(item) for item in reply.json()["snapshots"]]

    async def restore(self, snapshot_id: str) -> SnapshotInfo:
        """Make the session the snapshot's state again; the snapshot is kept."""
        return await self._snapshot_post(f"snapshots/{snapshot_id}/restore")

    async def delete_snapshot(self, snapshot_id: str) -> None:
        url = f"/v1/sessions/{self.id}/snapshots/{snapshot_id}"
        with translated(self.client.http):
            check(await self.client.http.delete(url))

    async def fork(
        self, n: int = 1, *, snapshot_id: str | None = None
    ) -> list[tuple[AsyncRemoteSession, ForkResult]]:
        """`n` new sessions with this one's state and files (or a snapshot's), each with what
        of the namespace it received (`kept`) and what could not cross (`not_kept`)."""
        body = {"n": n, "snapshot_id": snapshot_id}
        url = f"/v1/sessions/{self.id}/fork"
        with translated(self.client.http):
            reply = check(await self.client.http.post(url, json=body))
        forks = [ForkResult.model_validate(item) for item in reply.json()["forks"]]
        return [(AsyncRemoteSession(self.client, fork.session), fork) for fork in forks]

    async def _snapshot_post(self, path: str) -> SnapshotInfo:
        with translated(self.client.http):
            reply = check(await self.client.http.post(f"/v1/sessions/{self.id}/{path}"))
        return SnapshotInfo.model_validate_json(reply.content)

    async def close(self) -> None:
        with translated(self.client.http):
            check(await self.client.http.delete(f"/v1/sessions/{self.id}"))


class AsyncRemoteTree:
    """A remote session's workdir as a tree (see `Session.tree`): paths relative to the workdir,
    or absolute in it; a symlink is described, never followed."""

    def __init__(self, client: AsyncClient, session_id: str) -> None:
        self.client = client
        self._session = f"/v1/sessions/{session_id}"
        self._url = f"{self._session}/tree"

    async def list(self, path: str = "", depth: int = 1) -> builtins.list[FileEntry]:
        """Entries under the directory `path`, `depth` levels down (1: its children)."""
        params: dict[str, str | int] = {"path": path, "depth": depth}
        with translated(self.client.http):
            data = check(await self.client.http.get(self._url, params=params)).json()
        return [FileEntry.model_validate(item) for item in data["entries"]]

    async def stat(self, path: str) -> FileEntry:
        with translated(self.client.http):
            response = check(await self.client.http.get(f"{self._url}/stat", params={"path": path}))
        return FileEntry.model_validate_json(response.content)

    async def make_dir(self, path: str, mode: int = 0o755) -> bool:
        """Make it with its parents; False when it was already a directory."""
        body = {"path": path, "mode": mode}
        with translated(self.client.http):
            response = check(await self.client.http.post(f"{self._url}/dirs", json=body))
        return response.status_code == 201

    async def remove(self, path: str, *, recursive: bool = False) -> None:
        """Remove a file, a symlink (itself) or a directory (with its contents: `recursive`)."""
        params = {"path": path, "recursive": "true" if recursive else "false"}
        with translated(self.client.http):
            check(await self.client.http.delete(self._url, params=params))

    async def move(self, source: str, destination: str) -> FileEntry:
        body = {"source": source, "destination": destination}
        with translated(self.client.http):
            response = check(await self.client.http.post(f"{self._url}/move", json=body))
        return FileEntry.model_validate_json(response.content)

    async def sign_url(
        self, path: str, operation: str = "read", *, expires_in_s: int = 3600
    ) -> SignedUrl:
        """A URL that reads (`read`: GET) or writes (`write`: PUT) the file without the key."""
        body = {"path": path, "operation": operation, "expires_in_s": expires_in_s}
        url = f"{self._session}/files/sign"
        with translated(self.client.http):
            response = check(await self.client.http.post(url, json=body))
        return SignedUrl.model_validate_json(response.content)

    async def watch(self, path: str = "", *, recursive: bool = False) -> AsyncIterator[FileEvent]:
        """Changes under the directory `path` as they are seen, from once the first snapshot is
        taken, until the caller stops iterating; an error (the session closed) ends it."""
        params = {"path": path, "recursive": "true" if recursive else "false"}
        reader = WatchReader()
        with translated(self.client.http):
            stream = self.client.http.stream("GET", f"{self._url}/watch", params=params)
            async with stream as reply:
                if reply.status_code >= 400:
                    await reply.aread()
                    check(reply)
                async for line in reply.aiter_lines():
                    event = reader.line(line)
                    if event is not None:
                        yield event


class AsyncRemoteCommands:
    """A remote session's shell commands (see `Session.commands`); commands are named by pid."""

    def __init__(self, client: AsyncClient, session_id: str) -> None:
        self.client = client
        self._url = f"/v1/sessions/{session_id}/commands"

    async def run(
        self,
        cmd: str,
        *,
        on_stdout: TextCallback | None = None,
        on_stderr: TextCallback | None = None,
        **options: Any,
    ) -> CommandResult:
        """Run to the end; with a callback, its output streams as it comes (SSE). `options`:
        CommandRequest's fields (args, env, cwd, timeout_s, ...)."""
        http = self.client.http
        if on_stdout is None and on_stderr is None:
            with translated(http):
                response = check(await http.post(self._url, json={"cmd": cmd, **options}))
            return CommandResult.model_validate_json(response.content)
        reader = CommandStreamReader()
        callbacks = {"stdout": on_stdout, "stderr": on_stderr, "pty": on_stdout}
        body = {"cmd": cmd, **options, "stream": True}
        with translated(http):
            await self._stream(body, reader, callbacks)
        return reader.result()

    async def _stream(
        self,
        body: dict[str, Any],
        reader: CommandStreamReader,
        callbacks: dict[str, TextCallback | None],
    ) -> None:
        async with self.client.http.stream("POST", self._url, json=body) as response:
            if response.status_code >= 400:
                await response.aread()
                check(response)
            async for line in response.aiter_lines():
                for name, text in reader.line(line):
                    callback = callbacks.get(name)
                    if callback is not None:
                        callback(text)

    async def start(self, cmd: str, **options: Any) -> CommandInfo:
        """Start it in the background; its pid names it in the calls below."""
        body = {"cmd": cmd, **options, "background": True}
        with translated(self.client.http):
            response = check(await self.client.http.post(self._url, json=body))
        return CommandInfo.model_validate_json(response.content)

    async def list(self) -> builtins.list[CommandInfo]:
        with translated(self.client.http):
            data = check(await self.client.http.get(self._url)).json()
        return [CommandInfo.model_validate(item) for item in data["commands"]]

    async def get(self, pid: int) -> CommandResult:
        """What it wrote so far, or how it ended."""
        with translated(self.client.http):
            response = check(await self.client.http.get(f"{self._url}/{pid}"))
        return CommandResult.model_validate_json(response.content)

    async def send_stdin(self, pid: int, data: str, *, eof: bool = False) -> None:
        body = {"data": data, "eof": eof}
        with translated(self.client.http):
            check(await self.client.http.post(f"{self._url}/{pid}/stdin", json=body))

    async def signal(self, pid: int, signal: str | int = "SIGTERM") -> None:
        with translated(self.client.http):
            url = f"{self._url}/{pid}/signal"
            check(await self.client.http.post(url, json={"signal": signal}))

    async def kill(self, pid: int) -> CommandResult:
        with translated(self.client.http):
            response = check(await self.client.http.delete(f"{self._url}/{pid}"))
        return CommandResult.model_validate_json(response.content)
