"""envd's file endpoints, over the default context's working directory.

    GET  /files?path=P                         the file's bytes
    POST /files?path=P                         write: multipart `file` part(s), or the raw body
                                               (`application/octet-stream`, optionally gzip);
                                               `X-Metadata-*` headers: the files' metadata
    POST /filesystem.Filesystem/*              see `filesystem.py` and `watchers.py`
    POST /process.Process/*                    see `process.py`
    POST anything else                         501 unimplemented

Written files get mode 0644 and their metadata (none: any old metadata is removed), as envd
does. Both /files routes also take E2B's signed URLs (`signing.py`). Paths: see `entries.py`.
"""

from __future__ import annotations

import zlib
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from starlette.datastructures import UploadFile

from engine.errors import BadParameter, NotImplementedHere, PayloadTooLarge
from engine.server.e2b.entries import relative, shown
from engine.server.e2b.routing import PREFIX, Sandbox, sandbox_of
from engine.server.e2b.state import sandboxes
from engine.server.runtime.state import State

router = APIRouter(prefix=PREFIX, dependencies=[Depends(sandbox_of)], include_in_schema=False)

FILE_MODE = 0o644  # what envd writes files with
METADATA_HEADER = "x-metadata-"


@router.get("/files")
async def read_file(sandbox: Sandbox, state: State, path: str = Query(...)) -> Response:
    session = sandboxes(state).session(sandbox)
    data = await session.read_file(str(relative(session, path)))
    return Response(data, media_type="application/octet-stream")


@router.post("/files")
async def write_files(
    request: Request, sandbox: Sandbox, state: State, path: str | None = Query(None)
) -> list[dict[str, Any]]:
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
    metadata = {
        key[len(METADATA_HEADER) :].lower(): value
        for key, value in request.headers.items()
        if key.lower().startswith(METADATA_HEADER)
    }
    written = []
    for target, data in uploads:
        rel = relative(session, target)
        await session.write_file(str(rel), data)
        await session.tree.annotate(str(rel), FILE_MODE, metadata or None)
        info: dict[str, Any] = {"name": shown(rel).name, "type": "file", "path": str(shown(rel))}
        if metadata:
            info["metadata"] = metadata
        written.append(info)
    return written


@router.post("/{service:path}")
async def unimplemented(service: str, sandbox: Sandbox) -> Response:
    """Any envd service or call lci does not know."""
    raise NotImplementedHere(
        f"lci does not implement envd's {service!r}: code execution (run_code), files, the "
        "filesystem service and the process service are available"
    )


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
