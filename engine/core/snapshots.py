"""A session's snapshots: its live interpreter kept frozen as a copy-on-write fork inside the same
sandbox, beside a copy of its working directory (the agent's side: engine/agent/snapshots.py);
restore makes the session that state again, in place.

Snapshots live as long as the sandbox that holds them: a restart (a timeout's kill, a crash, an
explicit restart) starts a fresh interpreter and they are gone (listing shows so, restoring one
is `snapshot_not_found`). Their memory is the session's (the same sandbox, the same limit) and
their copies of the workdir count against its `disk_mb`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from engine import observe
from engine.core.sandbox import Sandbox, SessionHost
from engine.errors import (
    CapacityExceeded,
    SandboxError,
    SessionBusy,
    SnapshotNotFound,
    SnapshotsUnavailable,
)
from engine.models import Limits, SnapshotInfo

MAX_SNAPSHOTS = 8  # per session, unless the manager's settings say otherwise
_BUNDLES = itertools.count()


class SessionSnapshots:
    """Snapshot, restore, list and delete (mixed into `Session`, which provides the lock, the
    sandbox and the reply routing)."""

    id: str
    limits: Limits
    executions: int
    _host: SessionHost
    _sandbox: Sandbox | None
    _lock: asyncio.Lock
    max_snapshots: int = MAX_SNAPSHOTS

    def _check_open(self) -> None:
        raise NotImplementedError

    async def _recover(self, why: str) -> None:
        raise NotImplementedError

    # -- the agent's replies -------------------------------------------------------------------
    def _init_snapshots(self) -> None:
        self._replies: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._snapshots: dict[str, SnapshotInfo] = {}
        self._snapshots_of: Sandbox | None = None

    def _on_reply(self, frame: dict[str, Any]) -> None:
        future = self._replies.pop(str(frame.get("id")), None)
        if future is not None and not future.done():
            future.set_result(frame)

    def _fail_replies(self, code: int | None = None) -> None:
        replies, self._replies = self._replies, {}
        status = "" if code is None else f" (status {code})"
        for future in replies.values():
            if not future.done():
                future.set_exception(
                    SandboxError(f"the interpreter exited{status} during the request")
                )

    async def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        """Send a request to the agent and wait for its reply (under the session's lock)."""
        sandbox = self._sandbox
        if sandbox is None or not sandbox.alive:
            raise SandboxError("the session's interpreter is not running")
        request_id = f"{self.id[:8]}-s{next(_BUNDLES)}"
        future = self._replies[request_id] = asyncio.get_running_loop().create_future()
        sandbox.send({**request, "id": request_id})
        try:
            reply: dict[str, Any] = await asyncio.wait_for(future, max(60.0, self.limits.timeout_s))
        except TimeoutError:
            raise SandboxError("the interpreter did not answer the snapshot request") from None
        finally:
            self._replies.pop(request_id, None)
        if not reply.get("ok"):
            raise SnapshotsUnavailable(str(reply.get("error") or "the request failed"))
        return reply

    @contextlib.asynccontextmanager
    async def _exclusive(self) -> AsyncIterator[None]:
        """One operation at a time, as for `execute`: a busy session answers SessionBusy."""
        self._check_open()
        if self._lock.locked():
            raise SessionBusy(f"session {self.id} is running an execution")
        async with self._lock:
            self._check_open()
            yield

    def _kept(self) -> dict[str, SnapshotInfo]:
        """The snapshots of the interpreter running now (a restart leaves none)."""
        sandbox = self._sandbox
        if sandbox is None or sandbox is not self._snapshots_of or not sandbox.alive:
            self._snapshots, self._snapshots_of = {}, sandbox
        return self._snapshots

    def _snapshot_info(self, data: dict[str, Any]) -> SnapshotInfo:
        return SnapshotInfo(
            id=str(data["id"]),
            session_id=self.id,
            created_at=float(data["created_at"]),
            executions=int(data["executions"]),
            memory_bytes=data.get("memory_bytes"),
            disk_bytes=int(data.get("disk_bytes") or 0),
            files=int(data.get("files") or 0),
        )

    # -- the operations --------------------------------------------------------------------------
    async def snapshot(self) -> SnapshotInfo:
        """Keep the interpreter's whole state and the working directory; returns the snapshot.
        Raises CapacityExceeded past the session's snapshot cap, SessionBusy while a cell runs."""
        async with self._exclusive():
            if self._sandbox is None or not self._sandbox.alive:
                await self._recover("died_idle")
            kept = self._kept()
            if len(kept) >= self.max_snapshots:
                raise CapacityExceeded(
                    f"session {self.id} keeps {len(kept)} snapshots, its most; delete one first"
                )
            started = time.perf_counter()
            sid = f"snap-{uuid.uuid4().hex[:16]}"
            reply = await self._ask({"type": "snapshot", "snapshot": sid})
            info = kept[sid] = self._snapshot_info(reply["snapshot"])
        ms = round((time.perf_counter() - started) * 1000, 2)
        observe.audit("session.snapshot", session_id=self.id, snapshot=sid, duration_ms=ms)
        return info

    async def list_snapshots(self) -> list[SnapshotInfo]:
        """The session's snapshots, oldest first, their memory figures measured now."""
        async with self._exclusive():
            kept = self._kept()
            if not kept:
                return []
            reply = await self._ask({"type": "snapshots"})
            for data in reply["snapshots"]:
                if data["id"] in kept:
                    kept[data["id"]] = self._snapshot_info(data)
            return sorted(kept.values(), key=lambda s: s.created_at)

    async def restore(self, snapshot_id: str) -> SnapshotInfo:
        """Make the session the snapshot's state again (interpreter and files); the snapshot is
        kept, so it can be restored again. Raises SnapshotNotFound."""
        async with self._exclusive():
            self._known(snapshot_id)
            started = time.perf_counter()
            reply = await self._ask({"type": "restore", "snapshot": snapshot_id})
            info = self._snapshot_info(reply["snapshot"]) if "snapshot" in reply else None
        ms = round((time.perf_counter() - started) * 1000, 2)
        observe.audit("session.restore", session_id=self.id, snapshot=snapshot_id, duration_ms=ms)
        return info or self._known(snapshot_id)

    async def delete_snapshot(self, snapshot_id: str) -> None:
        """Free the snapshot's memory and disk. Raises SnapshotNotFound."""
        async with self._exclusive():
            self._known(snapshot_id)
            await self._ask({"type": "drop", "snapshot": snapshot_id})
            self._kept().pop(snapshot_id, None)

    def _known(self, snapshot_id: str) -> SnapshotInfo:
        info = self._kept().get(snapshot_id)
        if info is None:
            raise SnapshotNotFound(
                f"session {self.id} has no snapshot {snapshot_id!r} (a restart of its "
                "interpreter ends its snapshots)",
                param="snapshot_id",
            )
        return info

    # -- state that crosses into another sandbox (a fork) ----------------------------------------
    async def export_state(self, snapshot_id: str | None = None) -> tuple[bytes, dict[str, Any]]:
        """The bundle a fork starts from (the live state, or a snapshot's) and its report
        {kept, not_kept, bytes}."""
        async with self._exclusive():
            if snapshot_id is not None:
                self._known(snapshot_id)
            elif self._sandbox is None or not self._sandbox.alive:
                await self._recover("died_idle")
            name = f"export-{uuid.uuid4().hex[:12]}.tar"
            request = {"type": "export", "path": name, "snapshot": snapshot_id}
            report = await self._ask(request)
            path = f".lci-snapshots/{name}"
            try:
                data = await self._host.read_file(path, max_bytes=self.limits.disk_mb << 20)
            finally:
                with contextlib.suppress(Exception):
                    await self._host.delete_file(path)
                    await self._ask({"type": "snapshots"})  # the agent tidies its folder
        return data, report

    async def import_state(self, bundle: bytes) -> dict[str, Any]:
        """Unpack a bundle from `export_state` here: its files and its namespace's names;
        returns {kept, not_kept}."""
        async with self._exclusive():
            name = f"import-{uuid.uuid4().hex[:12]}.tar"
            await self._host.write_file(f".lci-snapshots/{name}", bundle)
            return await self._ask({"type": "import", "path": name})
