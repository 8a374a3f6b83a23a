"""A session's file operations, through its host: observed, audited, and turned into SessionLost
when the storage under them is gone (`Session._on_host`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from engine import observe
from engine.core.chunked import MAX_FILE_BYTES, ChunkedFiles
from engine.core.sandbox import SessionHost
from engine.core.session_tree import WorkdirTree
from engine.models import FileInfo

T = TypeVar("T")


class SessionFiles(ChunkedFiles):
    id: str
    _host: SessionHost

    async def _on_host(self, operation: Callable[..., Awaitable[T]], *args: Any) -> T:
        raise NotImplementedError

    async def write_file(self, path: str, data: bytes) -> None:
        with observe.span("file.upload", session_id=self.id, bytes=len(data)):
            await self._on_host(self._host.write_file, path, data)
        observe.get().file_transferred("in", len(data))
        observe.audit("file.upload", session_id=self.id, path=path, bytes=len(data))

    async def read_file(self, path: str, max_bytes: int = MAX_FILE_BYTES) -> bytes:
        with observe.span("file.download", session_id=self.id):
            data = await self._on_host(self._host.read_file, path, max_bytes)
        observe.get().file_transferred("out", len(data))
        observe.audit("file.download", session_id=self.id, path=path, bytes=len(data))
        return data

    async def list_files(self) -> list[FileInfo]:
        return await self._on_host(self._host.list_files)

    async def delete_file(self, path: str) -> None:
        await self._on_host(self._host.delete_file, path)

    @property
    def tree(self) -> WorkdirTree:
        """The workdir's directories: stat, list, make, remove, move, watch (`session_tree.py`)."""
        return WorkdirTree(self.id, self._tree_op, self._host.sandbox_workdir)

    async def _tree_op(self, op: str, path: str, args: dict[str, Any]) -> Any:
        return await self._on_host(self._host.tree_op, op, path, args)
