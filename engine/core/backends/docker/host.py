"""A docker session's host side: its workdir volume, the keeper that holds it, and the factory of its
containers.

The workdir is a volume on the daemon's side (a tmpfs of exactly `disk_mb`, owned by the sandbox
user), so the engine needs nothing but the Docker API: it may run in another mount namespace, a
container, or on another machine than the daemon. A tmpfs volume keeps its content only while some
container has it mounted, so each session has a keeper: a small container that only waits, started
with the volume, removed with it. Files survive a sandbox being killed and replaced, and the engine
reads and writes them through the daemon and the keeper (see `files.py`), never the sandbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from engine.core import workdir as wd
from engine.core.backends.docker.api import DockerAPI
from engine.core.backends.docker.files import VolumeFiles
from engine.core.backends.docker.sandbox import DockerSandbox
from engine.core.backends.docker.spec import SANDBOX_WORKDIR, ContainerPlan, isolation
from engine.core.backends.docker.usage import from_stats
from engine.core.process_channel import ProcessChannel
from engine.core.sandbox import Sandbox, SessionHost
from engine.errors import LCIError, SandboxError
from engine.models import FileInfo, SessionUsage

log = logging.getLogger(__name__)
T = TypeVar("T")
StartSandbox = Callable[[ContainerPlan], Awaitable[DockerSandbox]]


@dataclass(frozen=True)
class Keeper:
    """A started keeper, and the attach connection that keeps it alive (its stdin)."""

    container_id: str
    stdin: socket.socket


StartKeeper = Callable[[ContainerPlan], Coroutine[Any, Any, Keeper]]


class Workdir:
    """A session's /workspace: its volume and the keeper container that holds it mounted. The
    keeper starts in the background, alongside the first sandbox; file operations wait for it."""

    def __init__(self, api: DockerAPI, plan: ContainerPlan, owner: tuple[int, int]) -> None:
        self.api = api
        self.volume = plan.workdir
        self.disk_mb = plan.limits.disk_mb
        self.owner = owner
        self._keeper: asyncio.Task[Keeper] | None = None
        self._files: VolumeFiles | None = None

    def start_keeper(self, start: StartKeeper, plan: ContainerPlan) -> None:
        self._keeper = asyncio.get_running_loop().create_task(start(plan))

    async def files(self) -> VolumeFiles:
        assert self._keeper is not None, "the keeper starts with the workdir"
        keeper = await asyncio.shield(self._keeper)
        if self._files is None:
            self._files = VolumeFiles(self.api, keeper.container_id, self.disk_mb, self.owner)
        return self._files

    async def lost(self) -> str | None:
        """Why the files are gone, if they are: the keeper stopped, so its tmpfs went with it (a
        daemon restart stops every container; `docker kill` of the keeper does the same). A
        keeper still running after a new sandbox mounted the volume has held it all along, so
        the new sandbox has the files: the session asks then too (see `Session._recover`)."""
        keeper = self._keeper
        if keeper is None or not keeper.done() or keeper.cancelled() or keeper.exception():
            return None  # still starting, or never started (that failure was reported then)
        if await asyncio.to_thread(self.api.running, keeper.result().container_id):
            return None
        return (
            "its working directory is gone: the container that held it stopped (was the Docker "
            "daemon restarted?)"
        )

    async def remove(self) -> None:
        """Remove the keeper, then the volume; never raises (the reaper retries what fails)."""
        if self._files is not None:
            await asyncio.to_thread(self._files.close)
        keeper = None
        if self._keeper is not None:
            # A keeper still starting is waited for, then removed (a failed start removed its own).
            with contextlib.suppress(LCIError, asyncio.CancelledError):
                keeper = await self._keeper
        if keeper is not None:
            try:
                with contextlib.suppress(LCIError):
                    await asyncio.to_thread(self.api.remove, keeper.container_id)
            finally:
                keeper.stdin.close()
        await asyncio.to_thread(self._remove_volume)

    def _remove_volume(self) -> None:
        try:
            self.api.remove_volume(self.volume)
            return
        except LCIError as exc:
            failure = exc
        # A sandbox whose removal failed while the daemon was away (a restart) still holds the
        # volume, stopped: remove it and try again.
        with contextlib.suppress(LCIError):
            holders = self.api.holders(self.volume)
            for container_id in holders:
                self.api.remove(container_id)
            if holders:
                self.api.remove_volume(self.volume)
                return
        log.warning("could not remove the volume %s: %s", self.volume, failure)


class DockerHost(SessionHost):
    """A session's workdir and container plan; each spawn starts a container from them, except
    the first when the session claimed an already running container from the warm pool."""

    def __init__(
        self, plan: ContainerPlan, workdir: Workdir, start: StartSandbox, warm: DockerSandbox | None
    ) -> None:
        self.plan = plan
        self._workdir = workdir
        self._start = start
        self._warm = warm
        self._current: DockerSandbox | None = None
        self.isolation = isolation(plan.limits)
        self.sandbox_workdir = SANDBOX_WORKDIR

    async def spawn(self) -> Sandbox:
        warm, self._warm = self._warm, None
        if warm is not None and warm.alive:
            self._current = warm
            return warm
        self._current = await self._start(self.plan)
        return self._current

    async def open_processes(self) -> ProcessChannel:
        from engine.core.backends.docker import processes

        current = self._current
        if current is None or not current.alive:
            raise SandboxError("the sandbox is not running")
        user = f"{self._workdir.owner[0]}:{self._workdir.owner[1]}"
        return await processes.open_channel(self._workdir.api, current.container_id, user)

    async def usage(self) -> SessionUsage:
        current = self._current
        stats: dict[str, Any] = {}
        if current is not None and current.alive:
            with contextlib.suppress(LCIError):
                stats = await asyncio.to_thread(self._workdir.api.stats, current.container_id)
        try:
            files: list[FileInfo] | None = await self.list_files()
        except LCIError:
            files = None
        return from_stats(stats, files)

    async def write_file(self, path: str, data: bytes) -> None:
        files = await self._workdir.files()
        await wd.off_loop(files.write, path, data)

    async def read_file(self, path: str, max_bytes: int) -> bytes:
        files = await self._workdir.files()
        return await wd.off_loop(files.read, path, max_bytes)

    async def list_files(self) -> list[FileInfo]:
        files = await self._workdir.files()
        return await wd.off_loop(files.list)

    async def delete_file(self, path: str) -> None:
        files = await self._workdir.files()
        await wd.off_loop(files.delete, path)

    async def tree_op(self, op: str, path: str, args: dict[str, Any]) -> Any:
        files = await self._workdir.files()
        return await wd.off_loop(files.tree_op, op, path, args)

    async def storage_lost(self) -> str | None:
        return await self._workdir.lost()

    async def release(self) -> None:
        if self._warm is not None:
            await self._warm.kill()
        await self._workdir.remove()
