"""Watching a directory of a session's workdir, by polling snapshots.

There is no inotify across the sandbox boundary (the docker workdir is a volume only the keeper
container sees), so a watcher compares listings: each `poll()` lists the directory (recursively
when asked) and reports what changed since the last one, in the order create, write, chmod,
rename, remove. A rename is recognised by the inode moving to a new path; a change within one
poll that leaves size, mtime and mode as they were is not seen. Bounded: a snapshot holds at
most `MAX_ENTRIES` entries and one poll reports at most `MAX_EVENTS`; a watcher holds no task of
its own (`stream` polls while its consumer iterates), so it ends with its consumer or with the
session, whose closing makes the next poll fail.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Protocol

from engine.models import FileEntry, FileEvent


class Lister(Protocol):
    """What a watcher lists through (a session's `WorkdirTree`)."""

    async def list(self, path: str = "", depth: int = 1) -> list[FileEntry]: ...


MAX_EVENTS = 10_000
RECURSIVE_DEPTH = 32
POLL_INTERVAL_S = 0.2


def _signature(entry: FileEntry) -> tuple[object, ...]:
    return (entry.type, entry.inode, entry.size, entry.modified_ns)


class DirWatcher:
    def __init__(self, tree: Lister, path: str, recursive: bool) -> None:
        self.path = path  # workdir-relative; "" for the workdir
        self.recursive = recursive
        self._tree = tree
        self._last: dict[str, FileEntry] | None = None

    async def _snapshot(self) -> dict[str, FileEntry]:
        depth = RECURSIVE_DEPTH if self.recursive else 1
        entries = await self._tree.list(self.path, depth)
        return {entry.path: entry for entry in entries}

    async def start(self) -> None:
        """Take the first snapshot: FileNotFound (or FileAccessError) when `path` is not a
        directory of the workdir."""
        self._last = await self._snapshot()

    async def poll(self) -> list[FileEvent]:
        """What changed since the last poll (or `start`)."""
        if self._last is None:
            await self.start()
            return []
        now = await self._snapshot()
        events = diff(self._last, now, self.path)
        self._last = now
        return events[:MAX_EVENTS]

    async def stream(self, interval_s: float = POLL_INTERVAL_S) -> AsyncIterator[FileEvent]:
        """Events as they are seen, polling every `interval_s`, until the consumer stops or the
        session is gone (the poll's error ends the stream)."""
        if self._last is None:
            await self.start()
        while True:
            for event in await self.poll():
                yield event
            await asyncio.sleep(interval_s)


def diff(before: dict[str, FileEntry], after: dict[str, FileEntry], base: str) -> list[FileEvent]:
    """The events that turn the snapshot `before` into `after`; paths relative to `base`."""

    def name(path: str) -> str:
        return path[len(base) + 1 :] if base else path

    gone = {p: e for p, e in before.items() if p not in after}
    new = {p: e for p, e in after.items() if p not in before}
    moved_from = {(e.inode, e.type): p for p, e in gone.items() if e.inode}
    events: list[FileEvent] = []
    renamed: set[str] = set()
    for path, entry in sorted(new.items()):
        origin = moved_from.get((entry.inode, entry.type))
        if origin is not None and origin not in renamed:
            renamed.add(origin)
            events.append(FileEvent(type="rename", path=name(origin), entry=None))
        events.append(FileEvent(type="create", path=name(path), entry=entry))
        if entry.type == "file" and entry.size:  # made and written since the last poll
            events.append(FileEvent(type="write", path=name(path), entry=entry))
    for path, entry in sorted(after.items()):
        old = before.get(path)
        if old is None:
            continue
        if _signature(old) != _signature(entry) and entry.type != "dir":
            events.append(FileEvent(type="write", path=name(path), entry=entry))
        if old.mode != entry.mode:
            events.append(FileEvent(type="chmod", path=name(path), entry=entry))
    for path in sorted(gone):
        if path not in renamed:
            events.append(FileEvent(type="remove", path=name(path), entry=None))
    return events
