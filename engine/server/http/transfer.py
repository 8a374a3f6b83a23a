"""Files sent to a client as attachments, named after the file (RFC 6266 `filename*`, so any name
survives, and the client saves it rather than showing it)."""

from __future__ import annotations

import mimetypes
from collections.abc import AsyncIterator
from pathlib import PurePosixPath
from urllib.parse import quote

from fastapi.responses import Response, StreamingResponse


def attachment(path: str) -> dict[str, str]:
    """The Content-Disposition header of a download of `path`."""
    name = PurePosixPath(path).name or "file"
    return {"Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}"}


def download(data: bytes, path: str) -> Response:
    """`data` as a download of `path`, typed by its name."""
    name = PurePosixPath(path).name or "file"
    media = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return Response(data, media_type=media, headers=attachment(path))


async def streamed_download(chunks: AsyncIterator[bytes], path: str) -> StreamingResponse:
    """A file read in `chunks` as a download of `path`. The first chunk is read before the
    response starts, so a missing file is still an error status, not a broken body."""
    first = await anext(chunks, b"")

    async def body() -> AsyncIterator[bytes]:
        yield first
        async for chunk in chunks:
            yield chunk

    return StreamingResponse(
        body(), media_type="application/octet-stream", headers=attachment(path)
    )
