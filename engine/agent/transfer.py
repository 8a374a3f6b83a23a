"""A session's state as a file that another sandbox can start from (a fork into a new session).

The bundle is a tar: `names/<name>` (each user name pickled on its own, so one object that cannot
be pickled costs only its own name) and the working directory under `files/`. Objects are
pickled with cloudpickle where the sandbox has it (functions, lambdas and classes defined in cells
travel by value), else with the standard pickle. What cannot cross (open files, sockets,
generators, threads, locks, ...) is reported per name with the reason, on both sides.
"""

from __future__ import annotations

import io
import os
import pickle
import re
import tarfile
from typing import Any


def _pickler_here() -> Any:
    """cloudpickle where the sandbox's interpreter has it, else the standard pickle."""
    try:
        import cloudpickle
    except ImportError:  # pragma: no cover - depends on the sandbox
        return pickle
    return cloudpickle


_pickler = _pickler_here()

NAMES = "names"  # one member per name: its pickle
FILES = "files"
_COPY_BUFFER = 1 << 20
# The notebook's own history names (_i3, _12, _, __, ...): a new kernel keeps its own history.
_HISTORY = re.compile(r"_+|_i+|_i?\d+")


def user_names(namespace: dict[str, Any], baseline: frozenset[str]) -> list[str]:
    """The names user code made (the kernel's own and the history's left out)."""
    return [
        name
        for name in namespace
        if name not in baseline and not name.startswith("__") and not _HISTORY.fullmatch(name)
    ]


def write_bundle(
    path: str,
    files_dir: str,
    namespace: dict[str, Any],
    baseline: frozenset[str],
    skip: str | None = None,
) -> dict[str, Any]:
    """Write the bundle of `namespace` and `files_dir` (`skip`: a top-level name left out) to
    `path`; returns {kept, not_kept, bytes}."""
    kept: list[str] = []
    not_kept: dict[str, str] = {}
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tarfile.TarFile(path, "w", copybufsize=_COPY_BUFFER) as bundle:
        for name in user_names(namespace, baseline):
            try:
                blob = _pickler.dumps(namespace[name], protocol=5)
            except BaseException as exc:  # any object may fail in any way
                not_kept[name] = _reason(namespace[name], exc)
                continue
            info = tarfile.TarInfo(f"{NAMES}/{name}")
            info.size = len(blob)
            bundle.addfile(info, io.BytesIO(blob))
            kept.append(name)
        for name in sorted(os.listdir(files_dir)):
            if name != skip:
                bundle.add(os.path.join(files_dir, name), f"{FILES}/{name}", recursive=True)
    return {"kept": sorted(kept), "not_kept": not_kept, "bytes": os.path.getsize(path)}


def read_bundle(path: str, workdir: str, namespace: dict[str, Any]) -> dict[str, Any]:
    """Unpack a bundle into this sandbox: its files into `workdir`, its names into `namespace`;
    the bundle is removed. Returns {kept, not_kept}."""
    kept: list[str] = []
    not_kept: dict[str, str] = {}
    with tarfile.TarFile(path, "r", copybufsize=_COPY_BUFFER) as bundle:
        links: set[str] = set()
        for member in bundle.getmembers():
            if member.name.startswith(f"{FILES}/") and _safe(member, links):
                member.name = member.name[len(FILES) + 1 :]
                bundle.extract(member, workdir, set_attrs=False)
            elif member.name.startswith(f"{NAMES}/") and member.isfile():
                name = member.name[len(NAMES) + 1 :]
                source = bundle.extractfile(member)
                try:
                    namespace[name] = _pickler.loads(source.read() if source else b"")
                    kept.append(name)
                except BaseException as exc:  # a module missing here, say
                    not_kept[name] = f"cannot be rebuilt here: {type(exc).__name__}: {exc}"
    os.unlink(path)
    return {"kept": kept, "not_kept": not_kept}


def _safe(member: tarfile.TarInfo, links: set[str]) -> bool:
    """Whether a member may be unpacked: a plain file, folder or symlink whose path stays inside
    and goes through no symlink unpacked before it (what tarfile's `data` filter ensures, on an
    interpreter that may predate it)."""
    parts = member.name.split("/")
    if member.name.startswith("/") or ".." in parts or "" in parts[1:]:
        return False
    if any("/".join(parts[:i]) in links for i in range(2, len(parts))):
        return False
    if member.issym():
        links.add(member.name)
        return True
    return member.isfile() or member.isdir()


def _reason(value: Any, exc: BaseException) -> str:
    kind = type(value).__name__
    return f"{kind} cannot be copied into another sandbox ({type(exc).__name__}: {exc})"[:300]
