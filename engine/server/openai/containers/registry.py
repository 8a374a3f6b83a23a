"""Containers as OpenAI describes them, over lci sessions: a container is a session plus a name, an
expiry (minutes after its last activity) and a catalogue of its files with `cfile_` ids.

Every live session is a container: one made with `/v1/containers` or by a Responses call is
registered when it starts; any other (a `/v1/sessions` one) is adopted the first time it is looked
at, with the manager's idle timeout as its expiry. A container whose session is gone — expired here,
closed by the manager's idle expiry or to make room, or deleted through the session API — answers
with status `expired` and its metadata until it is deleted; it can no longer run code or serve files.

The file catalogue follows the working directory: listing it registers files the code wrote
(`source: "assistant"`) and forgets files that are gone, so ids stay stable while a file exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from engine.config import Settings
from engine.core.manager import SessionManager
from engine.core.session import Session
from engine.errors import (
    ContainerExpired,
    ContainerNotFound,
    FileNotFound,
    SessionClosed,
    SessionNotFound,
)
from engine.models import Limits, SessionSpec
from engine.server.openai.files.store import FileStore
from engine.server.runtime.runner import ServerRunner

log = logging.getLogger(__name__)

MEMORY_TIERS_MB = {"1g": 1024, "4g": 4096, "16g": 16384, "64g": 65536}
DEFAULT_MINUTES = 20  # OpenAI's default expiry
MAX_MINUTES = 7 * 24 * 60
KEPT_EXPIRED = 1000  # expired containers' metadata kept for retrieval, oldest forgotten first
_order = itertools.count()  # ties of created_at are listed in creation order


@dataclass
class ContainerFile:
    id: str
    path: str  # relative to the working directory
    bytes: int
    modified_at: float
    created_at: float
    source: str  # "user" (uploaded) or "assistant" (written by code)
    order: int = field(default_factory=lambda: next(_order))

    def wire(self, container: Container) -> dict[str, Any]:
        """The OpenAI `container.file` object."""
        return {
            "id": self.id,
            "object": "container.file",
            "bytes": self.bytes,
            "container_id": container.id,
            "created_at": int(self.created_at),
            "path": str(PurePosixPath(container.workdir) / self.path),
            "source": self.source,
        }


@dataclass
class Container:
    id: str  # the session id
    name: str
    created_at: float
    minutes: int
    memory_limit: str | None
    workdir: str
    last_active_at: float
    expired: bool = False
    # Made by a Responses call that named no container: closed `implicit_container_ttl_s` after
    # the call (what `minutes` reports) unless a later call continues in it.
    implicit: bool = False
    owner: str = ""  # the API key's principal that made it; other keys never see it
    files: dict[str, ContainerFile] = field(default_factory=dict)  # by relative path
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    order: int = field(default_factory=lambda: next(_order))

    @property
    def status(self) -> str:
        return "expired" if self.expired else "running"

    def wire(self) -> dict[str, Any]:
        """The OpenAI `container` object."""
        return {
            "id": self.id,
            "object": "container",
            "created_at": int(self.created_at),
            "status": self.status,
            "expires_after": {"anchor": "last_active_at", "minutes": self.minutes},
            "last_active_at": int(self.last_active_at),
            "memory_limit": self.memory_limit,
            "name": self.name,
        }


class ContainerRegistry:
    def __init__(
        self,
        manager: SessionManager,
        runner: ServerRunner,
        files: FileStore,
        settings: Settings,
        sweep_interval_s: float = 30.0,
    ) -> None:
        self.manager = manager
        self.runner = runner
        self.file_store = files
        self.settings = settings
        self.sweep_interval_s = sweep_interval_s
        self._containers: OrderedDict[str, Container] = OrderedDict()
        self._sweeper: asyncio.Task[None] | None = None

    # -- containers ----------------------------------------------------------------------------
    async def create(
        self,
        name: str,
        *,
        minutes: int = DEFAULT_MINUTES,
        memory_limit: str | None = None,
        file_ids: list[str] | None = None,
        param: str = "file_ids",
        owner: str = "",
    ) -> Container:
        """A new container of `owner` with these files copied in (unknown ids are refused before
        anything starts)."""
        self.check_files(file_ids or [], param, owner)
        session = await self.runner.create(self._spec(memory_limit), owner)
        container = self.register(
            session, name, minutes=minutes, memory_limit=memory_limit, owner=owner
        )
        try:
            for file_id in file_ids or ():
                record = self.file_store.get(file_id, owner)
                data = await self.file_store.read(file_id, owner)
                await self.add_file(container, record.filename, data, source="user")
        except BaseException:
            await self.delete(container.id)
            raise
        return container

    def check_files(self, file_ids: list[str], param: str, owner: str | None = None) -> None:
        """FileNotFound, naming the entry of `param`, unless every id is a stored file."""
        for index, file_id in enumerate(file_ids):
            try:
                self.file_store.get(file_id, owner)
            except FileNotFound as exc:
                raise FileNotFound(exc.message, f"{param}[{index}]") from None

    def register(
        self,
        session: Session,
        name: str,
        *,
        minutes: int = DEFAULT_MINUTES,
        memory_limit: str | None = None,
        owner: str | None = None,
        implicit: bool = False,
    ) -> Container:
        """Record a live session as a container (kept as it is when already recorded); it belongs
        to `owner`, by default the session's."""
        known = self._containers.get(session.id)
        if known is not None:
            return known
        container = Container(
            id=session.id,
            name=name,
            created_at=session.created_at,
            minutes=minutes,
            memory_limit=memory_limit,
            workdir=session.info().workdir,
            last_active_at=session.last_used_at,
            owner=self.runner.owner_of(session.id) if owner is None else owner,
            implicit=implicit,
        )
        self._containers[session.id] = container
        self._ensure_sweeper()
        return container

    def get(
        self, container_id: str, param: str | None = None, owner: str | None = None
    ) -> Container:
        """The container, live or expired; a live session not yet recorded is adopted. With
        `owner`, another key's container is not found, exactly as one that does not exist."""
        container = self._containers.get(container_id)
        if container is None:
            try:
                session = self.manager.get(container_id)
            except SessionNotFound:
                raise _not_found(container_id, param) from None
            idle_minutes = math.ceil(self.settings.idle_timeout_s / 60)
            container = self.register(session, f"session {container_id}", minutes=idle_minutes)
        if owner is not None and container.owner != owner:
            raise _not_found(container_id, param)
        self._refresh(container)
        return container

    def knows(self, container_id: str) -> bool:
        return container_id in self._containers

    def all(self, owner: str | None = None) -> list[Container]:
        for session in self.manager.list():
            self.get(session.id)
        for container in self._containers.values():
            self._refresh(container)
        mine = [c for c in self._containers.values() if owner is None or c.owner == owner]
        return sorted(mine, key=lambda c: (c.created_at, c.order))

    def session(self, container: Container, param: str | None = None) -> Session:
        """The live session of a running container; ContainerExpired otherwise."""
        self._refresh(container)
        if not container.expired:
            with contextlib.suppress(SessionNotFound):
                return self.manager.get(container.id)
        raise ContainerExpired(f"Container {container.id} is expired.", param)

    @staticmethod
    def continued(container: Container) -> None:
        """A later call continues in `container`: an implicit one is the client's from now on, and
        expires as a named one does (the runner cancels its short timer in the same step)."""
        if container.implicit:
            container.implicit = False
            container.minutes = DEFAULT_MINUTES

    async def delete(self, container_id: str, owner: str | None = None) -> None:
        container = self.get(container_id, owner=owner)
        self._containers.pop(container.id, None)
        with contextlib.suppress(SessionNotFound, SessionClosed):
            await self.manager.close(container.id)

    async def sweep(self) -> int:
        """Close running containers idle for longer than their expiry; returns how many."""
        now = time.time()
        closed = 0
        for container in list(self._containers.values()):
            self._refresh(container)
            if container.expired or now < container.last_active_at + container.minutes * 60:
                continue
            with contextlib.suppress(SessionNotFound):
                if self.manager.get(container.id).busy:
                    continue  # never cut a running execution short
            container.expired = True
            closed += 1
            with contextlib.suppress(SessionNotFound, SessionClosed):
                await self.manager.close(container.id)
        self._forget_old()
        return closed

    async def aclose(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper

    # -- files ---------------------------------------------------------------------------------
    async def files(self, container: Container) -> list[ContainerFile]:
        """The container's files, in creation order, with ids for files new in the workdir."""
        session = self.session(container)
        async with container.lock:
            listing = await session.list_files()
            current: dict[str, ContainerFile] = {}
            for info in listing:
                known = container.files.get(info.path)
                if known is None:
                    known = ContainerFile(
                        id=_cfile_id(),
                        path=info.path,
                        bytes=info.size,
                        modified_at=info.modified_at,
                        created_at=info.modified_at,
                        source="assistant",
                    )
                known.bytes, known.modified_at = info.size, info.modified_at
                current[info.path] = known
            container.files = current
        return sorted(current.values(), key=lambda f: (f.created_at, f.order))

    async def file(self, container: Container, file_id: str) -> ContainerFile:
        for item in await self.files(container):
            if item.id == file_id:
                return item
        raise FileNotFound(f"No file found with id {file_id!r} in container {container.id}.")

    async def add_file(
        self, container: Container, filename: str, data: bytes, *, source: str = "user"
    ) -> ContainerFile:
        """Write a file at the top of the working directory (replacing one of that name)."""
        session = self.session(container)
        async with container.lock:
            await session.write_file(filename, data)
            session.last_used_at = time.time()  # an upload is activity: it delays expiry
            now = time.time()
            item = ContainerFile(
                id=_cfile_id(),
                path=filename,
                bytes=len(data),
                modified_at=now,
                created_at=now,
                source=source,
            )
            container.files[filename] = item
        return item

    async def read_file(self, container: Container, item: ContainerFile) -> bytes:
        return await self.session(container).read_file(item.path)

    async def delete_file(self, container: Container, item: ContainerFile) -> None:
        session = self.session(container)
        async with container.lock:
            await session.delete_file(item.path)
            container.files.pop(item.path, None)

    # -- plumbing ------------------------------------------------------------------------------
    def _spec(self, memory_limit: str | None) -> SessionSpec:
        limits = self.settings.limits
        if memory_limit is not None:
            changed = {**limits.model_dump(), "memory_mb": MEMORY_TIERS_MB[memory_limit]}
            limits = Limits.model_validate(changed)
        return SessionSpec(backend=self.settings.backend, limits=limits)

    def _refresh(self, container: Container) -> None:
        """Follow the session: its last activity, and whether it is gone."""
        if container.expired:
            return
        try:
            container.last_active_at = self.manager.get(container.id).last_used_at
        except SessionNotFound:
            container.expired = True

    def _forget_old(self) -> None:
        expired = [c.id for c in self._containers.values() if c.expired]
        for container_id in expired[: max(0, len(expired) - KEPT_EXPIRED)]:
            self._containers.pop(container_id, None)

    def _ensure_sweeper(self) -> None:
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval_s)
            try:
                await self.sweep()
            except Exception:  # keep sweeping whatever one close did
                log.exception("container expiry failed")


def _not_found(container_id: str, param: str | None) -> ContainerNotFound:
    return ContainerNotFound(f"No container found with id {container_id!r}.", param)


def _cfile_id() -> str:
    return f"cfile_{secrets.token_hex(16)}"
