"""How E2B's envd shows paths and entries, and how lci's paths map to them.

E2B's home `/home/user` is the working directory: relative paths, paths under `/home/user` and
paths under the workdir as the sandbox sees it all name entries in it, and entries are shown
under `/home/user`. The sandbox's one user is E2B's `user` (lci's image calls it `sandbox`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any

from engine.core.session import Session
from engine.errors import BadParameter, LCIError
from engine.models import FileEntry

E2B_HOME = PurePosixPath("/home/user")
_MAX_LINKS = 8
_TYPES = {"file": "FILE_TYPE_FILE", "dir": "FILE_TYPE_DIRECTORY", "symlink": "FILE_TYPE_SYMLINK"}


def relative(session: Session, path: str, *, allow_root: bool = False) -> PurePosixPath:
    """`path` relative to the working directory; refuses paths outside it."""
    if "\x00" in path:
        raise BadParameter("path contains a NUL byte", "path")
    pure = PurePosixPath(path)
    for root in (E2B_HOME, PurePosixPath(session.info().workdir)):
        if pure.is_absolute() and pure.is_relative_to(root):
            pure = pure.relative_to(root)
    if pure.is_absolute():
        raise BadParameter(
            f"path {path!r} is outside the sandbox's working directory ({E2B_HOME} or "
            f"{session.info().workdir})",
            "path",
        )
    parts = [p for p in pure.parts if p not in ("", ".")]
    if ".." in parts or (not parts and not allow_root):
        raise BadParameter(f"path {path!r} does not name a file in the working directory", "path")
    return PurePosixPath(*parts) if parts else PurePosixPath(".")


def shown(rel: str | PurePosixPath) -> PurePosixPath:
    """A workdir-relative path as E2B shows it."""
    rel = PurePosixPath(rel)
    return E2B_HOME if str(rel) in ("", ".") else E2B_HOME / rel


def timestamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def _who(name: str) -> str:
    return name if name == "root" else "user"


async def followed(session: Session, entry: FileEntry) -> FileEntry:
    """What envd's Stat describes: a symlink's target (its type, size, mode), still naming the
    link; the link itself when its target is missing or outside the working directory."""
    seen, current = 0, entry
    while current.type == "symlink" and seen < _MAX_LINKS:
        target = _target(session, current)
        if target is None or not PurePosixPath(target).is_relative_to(E2B_HOME):
            return entry
        try:
            current = await session.tree.stat(str(relative(session, target, allow_root=True)))
        except LCIError:
            return entry
        seen += 1
    if current.type == "symlink":
        return entry
    return current.model_copy(update={"path": entry.path, "symlink_target": entry.symlink_target})


def _target(session: Session, entry: FileEntry) -> str | None:
    """A symlink's target as an absolute path, as envd reports it."""
    if entry.symlink_target is None:
        return None
    target = PurePosixPath(entry.symlink_target)
    if not target.is_absolute():
        target = shown(entry.path).parent / target
    workdir = PurePosixPath(session.info().workdir)
    if target.is_relative_to(workdir):
        target = E2B_HOME / target.relative_to(workdir)
    return str(target)


def wire_entry(session: Session, entry: FileEntry) -> dict[str, Any]:
    """envd's `EntryInfo` (JSON codec) of an entry."""
    full = shown(entry.path)
    wire: dict[str, Any] = {
        "name": full.name,
        "type": _TYPES.get(entry.type, "FILE_TYPE_UNSPECIFIED"),
        "path": str(full),
        "size": str(entry.size),
        "mode": entry.mode,
        "permissions": entry.permissions,
        "owner": _who(entry.owner),
        "group": _who(entry.group),
        "modifiedTime": timestamp(entry.modified_at),
    }
    if (target := _target(session, entry)) is not None:
        wire["symlinkTarget"] = target
    if entry.metadata:
        wire["metadata"] = entry.metadata
    return wire
