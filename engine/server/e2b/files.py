"""envd's file endpoints, over the default context's working directory.

    GET  /files?path=P                         the file's bytes
    POST /files?path=P                         write: multipart `file` part(s), or the raw body
                                               (`application/octet-stream`, optionally gzip)
    POST /filesystem.Filesystem/ListDir        list (connect-rpc, JSON codec: what the SDKs send)
    POST /filesystem.Filesystem/Stat           one entry (`files.exists`, `files.get_info`)
    POST /filesystem.Filesystem/*, /process.Process/*   501 unimplemented

Paths: E2B's home `/home/user` is the working directory, as are relative paths and paths under
the working directory as the sandbox sees it (`/workspace`). Anything else is outside what lci
lets a client touch, and is refused (400). Directories exist only as the parents of files.
"""

from __future__ import annotations

import zlib
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict
from starlette.datastructures import UploadFile

from engine.core.session import Session
from engine.errors import BadParameter, FileNotFound, NotImplementedHere, PayloadTooLarge
from engine.models import FileInfo
from engine.server.e2b.routing import PREFIX, Sandbox, sandbox_of
from engine.server.e2b.state import sandboxes
from engine.server.runtime.state import State

router = APIRouter(prefix=PREFIX, dependencies=[Depends(sandbox_of)], include_in_schema=False)

E2B_HOME = PurePosixPath("/home/user")


class RpcPath(BaseModel):
    model_config = ConfigDict(extra="allow")

    path: str = ""
    depth: int | None = None


@router.get("/files")
async def read_file(sandbox: Sandbox, state: State, path: str = Query(...)) -> Response:
    session = sandboxes(state).session(sandbox)
    data = await session.read_file(str(_relative(session, path)))
    return Response(data, media_type="application/octet-stream")


@router.post("/files")
async def write_files(
    request: Request, sandbox: Sandbox, state: State, path: str | None = Query(None)
) -> list[dict[str, str]]:
    session = sandboxes(state).session(sandbox)
    uploads: list[tuple[str, bytes]] = []
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form()
        parts = [p for p in form.getlist("file") if isinstance(p, UploadFile)]
        for part in parts:
            target = path if path and len(parts) == 1 else part.filename
            if not target:
                raise BadParameter("each file part needs a file name, or give `path`", "path")
            uploads.append((target, await part.read()))
    else:
        if not path:
            raise BadParameter("`path` is required for a raw upload", "path")
        body = await request.body()
        if request.headers.get("content-encoding", "").lower() == "gzip":
            body = _gunzip(body, state.options.max_upload_bytes)
        uploads.append((path, body))
    written = []
    for target, data in uploads:
        await session.write_file(str(_relative(session, target)), data)
        shown = _shown(session, target)
        written.append({"name": shown.name, "type": "file", "path": str(shown)})
    return written


@router.post("/filesystem.Filesystem/ListDir")
async def list_dir(body: RpcPath, sandbox: Sandbox, state: State) -> dict[str, Any]:
    session = sandboxes(state).session(sandbox)
    base = _relative(session, body.path, allow_root=True)
    depth = body.depth or 1
    entries: dict[PurePosixPath, dict[str, Any]] = {}
    for info in await session.list_files():
        rel = PurePosixPath(info.path)
        if base != PurePosixPath(".") and not rel.is_relative_to(base):
            continue
        inner = rel.relative_to(base) if base != PurePosixPath(".") else rel
        for level in range(1, min(depth, len(inner.parts)) + 1):
            sub = PurePosixPath(*inner.parts[:level])
            is_file = level == len(inner.parts)
            entries.setdefault(sub, _entry(session, base / sub, info if is_file else None))
    if not entries and base != PurePosixPath("."):
        raise FileNotFound(f"no directory {body.path!r}")
    return {"entries": [entries[key] for key in sorted(entries)]}


@router.post("/filesystem.Filesystem/Stat")
async def stat(body: RpcPath, sandbox: Sandbox, state: State) -> dict[str, Any]:
    session = sandboxes(state).session(sandbox)
    target = _relative(session, body.path, allow_root=True)
    if target == PurePosixPath("."):
        return {"entry": _entry(session, target, None)}
    for info in await session.list_files():
        rel = PurePosixPath(info.path)
        if rel == target:
            return {"entry": _entry(session, rel, info)}
        if rel.is_relative_to(target):
            return {"entry": _entry(session, target, None)}
    raise FileNotFound(f"no file or directory {body.path!r}")


@router.post("/{service:path}")
async def unimplemented(service: str, sandbox: Sandbox) -> Response:
    """envd's process service (commands, pty) and the rest of its filesystem service."""
    raise NotImplementedHere(
        f"lci does not implement envd's {service!r}: only code execution (run_code) and files "
        "read, write, list and exists are available"
    )


def _relative(session: Session, path: str, *, allow_root: bool = False) -> PurePosixPath:
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


def _shown(session: Session, path: str) -> PurePosixPath:
    """How a written path is reported back: as given when absolute, else in the workdir."""
    pure = PurePosixPath(path)
    return pure if pure.is_absolute() else PurePosixPath(session.info().workdir) / pure


def _entry(session: Session, rel: PurePosixPath, info: FileInfo | None) -> dict[str, Any]:
    workdir = PurePosixPath(session.info().workdir)
    full = workdir if rel == PurePosixPath(".") else workdir / rel
    modified = info.modified_at if info is not None else session.info().created_at
    return {
        "name": full.name,
        "type": "FILE_TYPE_FILE" if info is not None else "FILE_TYPE_DIRECTORY",
        "path": str(full),
        "size": str(info.size if info is not None else 0),
        "mode": 0o644 if info is not None else 0o755,
        "permissions": "-rw-r--r--" if info is not None else "drwxr-xr-x",
        "owner": "user",
        "group": "user",
        "modifiedTime": datetime.fromtimestamp(modified, UTC).isoformat().replace("+00:00", "Z"),
    }


def _gunzip(body: bytes, limit: int) -> bytes:
    """Decompress, refusing to inflate past `limit` (a small body may expand enormously)."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise BadParameter(f"body is not valid gzip: {exc}", "body") from exc
    if len(data) > limit or inflater.unconsumed_tail:
        raise PayloadTooLarge(f"decompressed body exceeds {limit} bytes")
    return data
