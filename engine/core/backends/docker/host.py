"""A docker session's host side: its workdir on the engine host, and the factory of its containers.

The workdir is a directory under the engine's state dir, bind-mounted at /workspace. When the engine
is root it is a tmpfs of exactly `disk_mb` (an exact disk quota); otherwise a plain directory, limited
per file only. Because it lives on the host, files survive a container being killed and replaced, and
the host reads and writes them through the confinement of `engine.core.workdir` (no symlink is
followed, no special file opened), never through the container.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from engine.core import workdir as wd
from engine.core.backends.docker.sandbox import DockerSandbox
from engine.core.backends.docker.spec import MIB, SANDBOX_WORKDIR, ContainerPlan, isolation
from engine.core.sandbox import Sandbox, SessionHost
from engine.errors import FileAccessError
from engine.models import FileInfo

T = TypeVar("T")
StartSandbox = Callable[[ContainerPlan], Awaitable[DockerSandbox]]


class Workdir:
    """A session's /workspace as the engine host sees it."""

    def __init__(self, path: Path, disk_mb: int, owner: tuple[int, int]) -> None:
        self.path = path
        self.disk_mb = disk_mb
        self.owner = owner
        self.exact = os.geteuid() == 0

    def create(self) -> None:
        os.mkdir(self.path, 0o700)
        try:
            if self.exact:
                wd.mount_tmpfs(str(self.path), self.disk_mb, *self.owner)
            else:
                os.chown(self.path, *self.owner)
        except OSError:
            os.rmdir(self.path)
            raise

    def remove(self) -> None:
        wd.remove_dir(self.path)


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
        self.isolation = isolation(plan.limits, workdir.exact)
        self.sandbox_workdir = SANDBOX_WORKDIR

    async def spawn(self) -> Sandbox:
        warm, self._warm = self._warm, None
        if warm is not None and warm.alive:
            return warm
        return await self._start(self.plan)

    async def write_file(self, path: str, data: bytes) -> None:
        parts = wd.split_path(path, SANDBOX_WORKDIR)
        if len(data) > self._workdir.disk_mb * MIB:
            raise FileAccessError(
                f"{path!r} is larger than the workdir ({self._workdir.disk_mb} MB)"
            )
        root = str(self._workdir.path)
        await wd.off_loop(wd.write_file, root, parts, data, self._workdir.owner)

    async def read_file(self, path: str, max_bytes: int) -> bytes:
        parts = wd.split_path(path, SANDBOX_WORKDIR)
        return await wd.off_loop(wd.read_file, str(self._workdir.path), parts, max_bytes)

    async def list_files(self) -> list[FileInfo]:
        return await wd.off_loop(wd.list_files, str(self._workdir.path))

    async def delete_file(self, path: str) -> None:
        parts = wd.split_path(path, SANDBOX_WORKDIR)
        await wd.off_loop(wd.delete_file, str(self._workdir.path), parts)

    async def release(self) -> None:
        if self._warm is not None:
            await self._warm.kill()
        await asyncio.to_thread(self._workdir.remove)
