"""A session's workdir as a tree: stat, list with depth, make directories, remove, move, annotate,
watch. Every path goes through the file API's checks (`entries.relative`); the walking itself is
`engine/agent/tree.py`, run by the backend (on the host, or by the docker file helper), which
never follows a link out of the workdir nor opens a special file.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from engine import observe
from engine.core.entries import MAX_ENTRIES, relative, to_entries, to_entry
from engine.core.watch import DirWatcher
from engine.models import FileEntry

TreeOp = Callable[[str, str, dict[str, Any]], Awaitable[Any]]


class WorkdirTree:
    """The tree operations of one session (`Session.tree`); paths as the file API takes them:
    relative to the workdir, or absolute under it or one of its aliases (`/mnt/data`,
    `/home/user`)."""

    def __init__(self, session_id: str, run: TreeOp, sandbox_root: str) -> None:
        self._session_id = session_id
        self._run = run
        self._root = sandbox_root

    def relative(self, path: str, allow_root: bool = False) -> str:
        """`path` checked and made workdir-relative (FileAccessError when it leaves the workdir)."""
        return relative(path, self._root, allow_root)

    async def stat(self, path: str) -> FileEntry:
        """One entry (a symlink is described, not followed); FileNotFound when there is none."""
        return to_entry(await self._run("stat", self.relative(path, True), {}))

    async def list(self, path: str = "", depth: int = 1) -> list[FileEntry]:
        """Entries under the directory `path`, `depth` levels down (1: its children; at most 32),
        directories and symlinks included, sorted by path, at most 10,000."""
        args = {"depth": max(1, depth), "limit": MAX_ENTRIES}
        return to_entries(await self._run("ls", self.relative(path, True), args))

    async def make_dir(self, path: str, mode: int = 0o700) -> bool:
        """Make a directory with its parents; False when it already existed (FileAccessError
        when something that is not a directory has the name)."""
        made = bool(await self._run("mkdir", self.relative(path), {"mode": mode & 0o777}))
        observe.audit("file.mkdir", session_id=self._session_id, path=path)
        return made

    async def remove(self, path: str) -> None:
        """Remove a file, a symlink (itself) or a directory with everything in it."""
        await self._run("remove", self.relative(path), {})
        observe.audit("file.remove", session_id=self._session_id, path=path)

    async def move(self, source: str, destination: str) -> FileEntry:
        """Rename within the workdir (parents of `destination` made); returns the moved entry."""
        args = {"to": self.relative(destination)}
        moved = to_entry(await self._run("move", self.relative(source), args))
        observe.audit("file.move", session_id=self._session_id, path=source, to=destination)
        return moved

    async def annotate(
        self, path: str, mode: int | None = None, metadata: dict[str, str] | None = None
    ) -> None:
        """Set a regular file's permission bits and replace its user metadata (stored as
        `user.e2b.*` extended attributes; None removes it)."""
        await self._run("annotate", self.relative(path), {"mode": mode, "metadata": metadata})

    def watch(self, path: str = "", recursive: bool = False) -> DirWatcher:
        """A watcher of the directory `path` (see `DirWatcher`); call `start()` on it."""
        return DirWatcher(self, self.relative(path, True), recursive)
