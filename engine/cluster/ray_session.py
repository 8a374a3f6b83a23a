"""`RaySession`: a session that runs in a Ray actor, with the surface of a local `Session`.

It holds only the actor's handle and the last snapshot the actor sent (state, counters, where it
runs), refreshed by every call; the actor is the truth. Every remote call is bounded: an actor that
died with its node, or does not answer within `ray_call_timeout_s`, makes the call fail with
`SessionLost` (410) and the session is cleaned up (the actor killed, the replica forgets it).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import ray
from pydantic import TypeAdapter
from ray.exceptions import GetTimeoutError, RayActorError

from engine import errors
from engine.callbacks import OutputCallbacks
from engine.cluster.actor import CHUNK_BYTES, Reply
from engine.core.chunked import MAX_FILE_BYTES
from engine.core.commands import CommandService
from engine.core.session import Session
from engine.core.session_tree import WorkdirTree
from engine.errors import (
    LCIError,
    NotImplementedHere,
    SessionClosed,
    SessionLost,
    SessionNotFound,
)
from engine.models import (
    Execution,
    FileInfo,
    OutputItem,
    SessionInfo,
    SessionState,
    SessionUsage,
)

_ITEM: TypeAdapter[OutputItem] = TypeAdapter(OutputItem)


def rebuild(error: dict[str, Any]) -> LCIError:
    """The lci error an actor reported (see `actor.error_reply`), as its own class."""
    return errors.from_code(
        str(error.get("code")),
        str(error.get("message", "")),
        param=error.get("param"),
        retry_after_s=error.get("retry_after_s"),
    )


def fetch(ref: Any, timeout_s: float) -> Reply:
    """An actor's reply, blocking (for the synchronous parts of the Session surface)."""
    reply: Reply = ray.get([ref], timeout=timeout_s)[0]
    return reply


def unwrap(reply: Reply) -> Any:
    if "error" in reply:
        raise rebuild(reply["error"])
    return reply.get("ok")


LOST = "the cluster node it ran on died or stopped answering; its variables and files are gone"


def unreachable(handle: Any, session_id: str, cause: BaseException) -> LCIError:
    """The error for an actor that did not answer (its handle killed, to be sure it is gone):
    SessionNotFound when it was closed on purpose (by another replica, or its idle expiry),
    SessionLost when its node died or it hangs."""
    with contextlib.suppress(Exception):
        ray.kill(handle, no_restart=True)
    if "ray.kill" in str(cause):
        return SessionNotFound(f"no session {session_id!r}")
    return SessionLost.of(session_id, LOST)


class RaySession(Session):
    """Not a local Session's machinery (no sandbox here): its public methods, over Ray."""

    def __init__(
        self,
        handle: Any,  # the actor's ActorHandle
        snapshot: dict[str, Any],
        timeout_s: float,
        forget: Callable[[str], None],
    ) -> None:
        info = SessionInfo.model_validate(snapshot["info"])
        self.id = info.id
        self.owner = snapshot.get("owner")
        self.handle = handle
        self._timeout = timeout_s
        self._forget = forget
        self.lost: str | None = None
        self.surface = ""
        self.usage = None  # measured inside its actor, not here
        self.apply(snapshot)

    async def measure(self) -> SessionUsage | None:
        return self._info.usage

    @property
    def commands(self) -> CommandService:
        raise NotImplementedHere("shell commands are not available for sessions on a Ray cluster")

    @property
    def tree(self) -> WorkdirTree:
        raise NotImplementedHere("directory operations are not available on a Ray cluster")

    def apply(self, snapshot: dict[str, Any]) -> None:
        self._info = info = SessionInfo.model_validate(snapshot["info"])
        self.backend, self.limits, self.state = info.backend, info.limits, info.state
        self.created_at, self.last_used_at = info.created_at, info.last_used_at
        self.executions, self.restarts = info.executions, info.restarts
        self._busy = bool(snapshot.get("busy"))

    @property
    def busy(self) -> bool:
        """As of the last answer of the actor (which refuses a second execution itself)."""
        return self._busy

    # -- calls ---------------------------------------------------------------------------------
    def _mark_lost(self, cause: BaseException) -> LCIError:
        """Clean up after an actor that cannot be reached; the error to raise. A lost session
        answers 410 on this replica until it is deleted, as a local one whose storage died."""
        error = unreachable(self.handle, self.id, cause)
        if isinstance(error, SessionLost):
            self.lost, self.state = LOST, SessionState.BROKEN
        else:
            self._closed_elsewhere()
        return error

    def _closed_elsewhere(self) -> None:
        """Closed through another replica, or by its idle expiry: this replica forgets it."""
        self._forget(self.id)
        self.state = SessionState.CLOSED

    def _reply(self, reply: Reply) -> Any:
        if "info" in reply:
            self.apply(reply["info"])
        try:
            return unwrap(reply)
        except SessionClosed:
            # Closed elsewhere while this replica still held the handle (the deleting replica
            # kills the actor next): here, as on any replica, the session no longer exists.
            self._closed_elsewhere()
            raise SessionNotFound(f"no session {self.id!r}") from None

    async def call(self, method: str, *args: Any, long: bool = False) -> Any:
        """One call to the actor. A short one must answer within the call timeout; a `long` one
        (an execution) may take as long as it takes while the actor answers a ping within it."""
        self._check_open()
        ref = getattr(self.handle, method).remote(*args)
        try:
            reply = await self._await(ref, long)
        except asyncio.CancelledError:
            ray.cancel(ref)  # the actor's task is cancelled too (an execution runs its ladder)
            raise
        return self._reply(reply)

    async def _await(self, awaitable: Any, long: bool) -> Any:
        future = asyncio.ensure_future(awaitable)
        try:
            while True:
                done, _ = await asyncio.wait({future}, timeout=self._timeout)
                if done:
                    return future.result()
                if not long:
                    raise TimeoutError(f"no answer within {self._timeout:g} s")
                await asyncio.wait_for(self.handle.info.remote(), self._timeout)  # still there?
        except (RayActorError, TimeoutError) as exc:
            raise self._mark_lost(exc) from exc
        finally:
            if not future.done():
                future.cancel()

    def refresh(self) -> None:
        """Fetch the actor's snapshot now (blocking: one round trip)."""
        try:
            reply = fetch(self.handle.info.remote(), self._timeout)
        except (RayActorError, GetTimeoutError) as exc:
            raise self._mark_lost(exc) from exc
        self._reply(reply)

    async def _stream(self, method: str, *args: Any, long: bool = False) -> AsyncIterator[Reply]:
        """The replies of an actor's generator method, each bounded as `call` bounds its one."""
        self._check_open()
        generator = getattr(self.handle, method).remote(*args)
        try:
            while True:
                try:
                    ref = await self._await(generator.__anext__(), long)
                except StopAsyncIteration:
                    return
                yield await self._await(ref, False)
        finally:
            with contextlib.suppress(Exception):
                ray.cancel(generator)

    # -- the Session surface -------------------------------------------------------------------
    async def start(self) -> None:
        return None  # the actor started it

    async def close(self) -> None:
        if self.state is SessionState.CLOSED:
            return
        try:
            if self.lost is None:  # a lost one's actor is killed already
                with contextlib.suppress(SessionLost):  # found lost now: deleted all the same
                    await self.call("close")
        finally:
            self.state = SessionState.CLOSED
            with contextlib.suppress(Exception):
                ray.kill(self.handle, no_restart=True)

    def info(self) -> SessionInfo:
        if self.state is not SessionState.CLOSED and self.lost is None:
            self.refresh()
        return self._info.model_copy(update={"state": self.state})

    async def interrupt(self) -> bool:
        return bool(await self.call("interrupt"))

    async def restart(self) -> None:
        await self.call("restart", long=True)

    async def execute_with(
        self,
        code: str,
        callbacks: OutputCallbacks,
        *,
        timeout_s: float | None = None,
        wait: bool = False,
    ) -> Execution:
        # The actor bounds the cell (timeout, then grace); meanwhile it must answer pings.
        listener = callbacks.item_callback()
        if listener is None:
            raw = await self.call("execute", code, timeout_s, wait, long=True)
            return callbacks.finished(Execution.model_validate(raw))
        async for reply in self._stream("execute_stream", code, timeout_s, wait, long=True):
            if "item" in reply:
                listener(_ITEM.validate_python(reply["item"]))
                continue
            raw = self._reply(reply)
            return callbacks.finished(Execution.model_validate(raw))
        raise SessionLost(f"session {self.id}: the execution ended without a result")

    async def write_file(self, path: str, data: bytes) -> None:
        async def one() -> AsyncIterator[bytes]:
            yield data

        await self.write_file_chunks(path, one())

    async def write_file_chunks(self, path: str, chunks: AsyncIterator[bytes]) -> int:
        """Sent on in pieces as they come: the replica never holds the whole file."""
        token = await self.call("upload_begin", path)
        size = 0
        async for chunk in chunks:
            for start in range(0, len(chunk), CHUNK_BYTES):
                piece = chunk[start : start + CHUNK_BYTES]
                await self.call("upload_chunk", token, piece)
                size += len(piece)
        await self.call("upload_end", token)
        return size

    async def read_file(self, path: str, max_bytes: int = MAX_FILE_BYTES) -> bytes:
        return b"".join([chunk async for chunk in self.read_file_chunks(path, max_bytes)])

    async def read_file_chunks(
        self, path: str, max_bytes: int = MAX_FILE_BYTES
    ) -> AsyncIterator[bytes]:
        async for reply in self._stream("download", path, max_bytes):
            if "chunk" in reply:
                yield reply["chunk"]
            else:
                self._reply(reply)  # the size first, or the error

    async def list_files(self) -> list[FileInfo]:
        return [FileInfo.model_validate(f) for f in await self.call("list_files")]

    async def delete_file(self, path: str) -> None:
        await self.call("delete_file", path)
