"""The engine's side of the workdir's tree operations (`engine/agent/tree.py`): path checks, the
translation of their results into `FileEntry` and of their refusals into the engine's errors.

Both backends go through here: the subprocess host runs `tree` on the workdir in a thread
(`local_call`), the docker backend's file helper runs it in the keeper and returns the same dicts.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import PurePosixPath
from typing import Any, TypeVar

from engine.agent import tree
from engine.core.workdir import WORKDIR_ALIASES, split_path
from engine.errors import FileAccessError, FileNotFound, LCIError
from engine.models import FileEntry

T = TypeVar("T")
MAX_ENTRIES = 10_000


def relative(path: str, sandbox_root: str | None, allow_root: bool = False) -> str:
    """`path` relative to the workdir ("" for the workdir itself, when `allow_root`), checked as
    the file API checks paths (absolute only under the workdir or its aliases, no "..")."""
    pure = PurePosixPath(path) if path else PurePosixPath(".")
    roots = (sandbox_root, *WORKDIR_ALIASES) if sandbox_root is not None else ()
    if allow_root and "\x00" not in path and (pure == PurePosixPath(".") or str(pure) in roots):
        return ""
    return "/".join(split_path(path, sandbox_root))


def to_entry(raw: Any) -> FileEntry:
    """A `tree` entry dict as a model (FileAccessError when it is malformed)."""
    try:
        return FileEntry(
            name=raw["name"],
            path=raw["path"],
            type=raw["type"],
            size=raw["size"],
            mode=raw["mode"],
            permissions=raw["permissions"],
            owner=raw["owner"],
            group=raw["group"],
            modified_at=raw["mtime"],
            symlink_target=raw["target"],
            metadata=raw["metadata"],
            inode=raw["inode"],
            modified_ns=raw["mtime_ns"],
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise FileAccessError(f"malformed directory entry: {exc}") from exc


def to_entries(raw: Any) -> list[FileEntry]:
    if not isinstance(raw, list):
        raise FileAccessError("malformed directory listing")
    return [to_entry(item) for item in raw]


def refusal(status: str, message: str) -> LCIError:
    """The engine's error for a `tree` refusal (by its status, as the file helper reports it)."""
    return FileNotFound(message) if status == "missing" else FileAccessError(message)


def local_call(operation: Callable[..., T], *args: Any) -> T:
    """Run a `tree` operation here (blocking: the caller puts it in a thread)."""
    try:
        return operation(*args)
    except tree.Refused as exc:
        raise refusal(exc.status, str(exc)) from exc
