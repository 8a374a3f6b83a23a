"""`SessionActor`: one session as a named, detached Ray actor on whichever lci node Ray chose.

The actor runs an ordinary local `SessionManager` with one session in it (lci's own sandbox,
subprocess or docker, on that node), so everything a session does locally it does here. What a
replica must know about the session (owner, spec, where it runs) lives here, never in a replica.

Every method answers an envelope instead of raising: `{"ok": value, "info": snapshot}` or
`{"error": {...}}` with the error's `code`. An lci error then crosses Ray as plain data and
is raised again in the replica as itself, whatever Ray does to exceptions it transports.

An idle session is closed by the inner manager's expiry, and the actor then ends itself (a detached
actor would otherwise hold its node's `lci` resource forever).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import ray

from engine.config import Settings
from engine.core.manager import SessionManager
from engine.core.session import Session
from engine.errors import BadParameter, LCIError, SessionClosed
from engine.models import OutputItem, SessionSpec, SessionState

CHUNK_BYTES = 1 << 20  # file transfers cross Ray in pieces of this size
_WATCH_S = 2.0  # how often the actor checks whether its session ended

Reply = dict[str, Any]


def error_reply(exc: LCIError) -> Reply:
    return {
        "error": {
            "code": exc.code,
            "message": exc.message,
            "param": getattr(exc, "param", None),
            "retry_after_s": getattr(exc, "retry_after_s", None),
        }
    }


async def _stop(run: asyncio.Future[Any]) -> None:
    """Cancel an execution once and wait until the session has finished its interrupt-then-kill
    ladder. Ray may deliver a cancellation more than once; a second one must not cut the ladder
    short, or the next cell could start while the interpreter is being replaced."""
    if run.done():
        return
    run.cancel()
    while not run.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait({run})
    with contextlib.suppress(asyncio.CancelledError, LCIError):
        run.result()


class SessionActor:
    def __init__(
        self, settings: dict[str, Any], spec: dict[str, Any], owner: str | None, session_id: str
    ) -> None:
        # One session per actor: sandboxes started ahead of time would only be waste here, and so
        # would a fork server (it pays off over many sessions; here it doubles the start, 1.5 s
        # against 0.8 s on the benchmark's machine). Cells import what they need themselves.
        local = {
            **settings,
            "ray_address": None,
            "subprocess_warm_pool": 0,
            "docker_warm_pool": 0,
            "forkserver": False,
        }
        self._manager = SessionManager(Settings.model_validate(local))
        self._spec = SessionSpec.model_validate(spec)
        self._owner = owner
        self._id = session_id
        self._session: Session | None = None
        self._uploads: dict[str, tuple[str, bytearray]] = {}
        context = ray.get_runtime_context()
        self._node_id = context.get_node_id()
        self._node_ip = ray.util.get_node_ip_address()
        self._watch: asyncio.Task[None] | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> Reply:
        try:
            self._session = await self._manager.create(self._spec, self._owner, self._id)
        except LCIError as exc:
            return error_reply(exc)
        self._watch = asyncio.get_running_loop().create_task(self._end_when_closed())
        return self._ok(None)

    async def _end_when_closed(self) -> None:
        """Idle expiry (of the inner manager) closed the session: the actor goes too."""
        while self._session is not None and self._session.state is not SessionState.CLOSED:
            await asyncio.sleep(_WATCH_S)
        await self._manager.close_all()
        ray.kill(ray.get_runtime_context().current_actor, no_restart=True)

    async def close(self) -> Reply:
        await self._manager.close_all()  # the replica kills the actor once this answered
        return {"ok": None}

    def _ok(self, value: Any) -> Reply:
        return {"ok": value, "info": self.snapshot()}

    def snapshot(self) -> dict[str, Any]:
        session = self._live()
        info = session.info().model_copy(
            update={"node_id": self._node_id, "node_ip": self._node_ip}
        )
        return {"info": info.model_dump(mode="json"), "owner": self._owner, "busy": session.busy}

    async def info(self) -> Reply:
        try:
            return self._ok(None)
        except LCIError as exc:  # not started yet
            return error_reply(exc)

    def _live(self) -> Session:
        if self._session is None:
            raise SessionClosed(f"session {self._id} is not started")
        return self._session

    async def _run(self, work: Callable[[Session], Awaitable[Any]]) -> Reply:
        try:
            return self._ok(await work(self._live()))
        except LCIError as exc:
            return error_reply(exc)

    async def restart(self) -> Reply:
        return await self._run(lambda s: s.restart())

    async def interrupt(self) -> Reply:
        return await self._run(lambda s: s.interrupt())

    # -- execution -----------------------------------------------------------------------------
    async def execute(self, code: str, timeout_s: float | None, wait: bool) -> Reply:
        """A cancelled call (the replica's client went away) cancels the execution here, which
        runs the session's interrupt-then-kill ladder."""
        try:
            run = asyncio.ensure_future(self._live().execute(code, timeout_s=timeout_s, wait=wait))
            try:
                execution = await asyncio.shield(run)
            except asyncio.CancelledError:
                await _stop(run)
                raise
        except LCIError as exc:
            return error_reply(exc)
        return self._ok(execution.model_dump(mode="json"))

    async def execute_stream(
        self, code: str, timeout_s: float | None, wait: bool
    ) -> AsyncIterator[Reply]:
        """Output items as they happen (`{"item": ...}`), then the Execution's reply."""
        queue: asyncio.Queue[OutputItem] = asyncio.Queue()
        try:
            session = self._live()
        except LCIError as exc:
            yield error_reply(exc)
            return
        run = asyncio.ensure_future(
            session.execute(code, timeout_s=timeout_s, wait=wait, on_output=queue.put_nowait)
        )
        try:
            while not run.done():
                getter = asyncio.ensure_future(queue.get())
                await asyncio.wait({getter, run}, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    yield {"item": getter.result().model_dump(mode="json")}
                else:
                    getter.cancel()
            while not queue.empty():
                yield {"item": queue.get_nowait().model_dump(mode="json")}
            try:
                execution = run.result()
            except LCIError as exc:
                yield error_reply(exc)
                return
            yield self._ok(execution.model_dump(mode="json"))
        finally:
            await _stop(run)

    # -- files ---------------------------------------------------------------------------------
    async def list_files(self) -> Reply:
        try:
            files = await self._live().list_files()
        except LCIError as exc:
            return error_reply(exc)
        return self._ok([f.model_dump(mode="json") for f in files])

    async def delete_file(self, path: str) -> Reply:
        return await self._run(lambda s: s.delete_file(path))

    async def upload_begin(self, path: str) -> Reply:
        token = uuid.uuid4().hex
        self._uploads[token] = (path, bytearray())
        return {"ok": token}

    async def upload_chunk(self, token: str, data: bytes) -> Reply:
        upload = self._uploads.get(token)
        if upload is None:
            return error_reply(BadParameter("no such upload", "file"))
        upload[1].extend(data)
        return {"ok": None}

    async def upload_end(self, token: str) -> Reply:
        """The file arrived whole on this node: write it into the session."""
        upload = self._uploads.pop(token, None)
        if upload is None:
            return error_reply(BadParameter("no such upload", "file"))
        path, data = upload
        return await self._run(lambda s: s.write_file(path, bytes(data)))

    async def download(self, path: str, max_bytes: int) -> AsyncIterator[Reply]:
        """The file in pieces (`{"chunk": bytes}`); an error reply first if it cannot be read."""
        try:
            data = await self._live().read_file(path, max_bytes)
        except LCIError as exc:
            yield error_reply(exc)
            return
        yield {"ok": len(data)}
        view = memoryview(data)
        for start in range(0, len(data), CHUNK_BYTES):
            yield {"chunk": bytes(view[start : start + CHUNK_BYTES])}
