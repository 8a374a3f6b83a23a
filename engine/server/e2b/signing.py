"""E2B's signed file URLs: `Sandbox.download_url` / `upload_url` of a secured sandbox.

The SDK signs them itself, with the sandbox's envd access token (which lci hands out as the
sandbox's token): `v1_` + unpadded base64 of sha256(`path:operation:user:token[:expiration]`),
operation `read` (GET /files) or `write` (POST /files), in the query as `signature` and
`signature_expiration` (Unix seconds). Such a request carries no header naming its sandbox: the
sandbox is the one whose token makes the signature, so a signature binds sandbox, path,
operation, user and expiry. An expired one is refused with 401 "signature is already expired".
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Iterable, Mapping

from engine.errors import Unauthorized
from engine.server.e2b.registry import E2BSandbox

FILES_PATH = "/files"


def signature(path: str, operation: str, user: str, token: str, expiration: int | None) -> str:
    raw = f"{path}:{operation}:{user}:{token}"
    if expiration is not None:
        raw += f":{expiration}"
    digest = hashlib.sha256(raw.encode()).digest()
    return "v1_" + base64.b64encode(digest).rstrip(b"=").decode("ascii")


def is_signed(path: str, query: Mapping[str, str]) -> bool:
    return path == FILES_PATH and "signature" in query


def signed_sandbox(
    candidates: Iterable[E2BSandbox], method: str, query: Mapping[str, str]
) -> E2BSandbox:
    """The sandbox whose token made the request's signature; Unauthorized when none did or it
    has expired."""
    operation = "read" if method in ("GET", "HEAD") else "write"
    presented = query.get("signature", "")
    raw_expiration = query.get("signature_expiration")
    try:
        expiration = int(raw_expiration) if raw_expiration else None
    except ValueError:
        raise Unauthorized("invalid signature expiration") from None
    path, user = query.get("path", ""), query.get("username", "")
    for sandbox in candidates:
        expected = signature(path, operation, user, sandbox.token, expiration)
        if secrets.compare_digest(expected.encode(), presented.encode()):
            if expiration is not None and expiration < time.time():
                raise Unauthorized("signature is already expired")
            return sandbox
    raise Unauthorized("invalid signature")
