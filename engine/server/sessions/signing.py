"""Signed, expiring URLs for one file of one session, for clients that must not hold the API key
(a browser, a job given one upload slot).

A URL is `/v1/signed/sessions/{id}/files/{path}?operation=&expires=&signature=`: the signature is
HMAC-SHA256, under the server's URL secret, of the session id, the workdir-relative path, the
operation (`read`: GET, `write`: PUT or POST) and the expiry (Unix seconds), unpadded base64url.
It is checked in constant time; it grants that one operation on that one file of that session
until then, and nothing else.

The secret is 32 random bytes in `<state dir>/url-signing.key` (0600), made once and read without
following links. A random secret rather than one derived from the API keys: a server without a key
can still sign, adding or rotating a key does not silently revoke (or, worse, keep valid) URLs
already handed out, and a leaked URL says nothing about any key. Deleting the file and restarting
revokes every URL. Engines sharing a state directory share the secret, which is harmless: a URL
names a session that lives in one of them only.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import secrets
import stat
import time
from pathlib import Path
from typing import Literal

from engine.core.state_dir import UnsafeStateDir
from engine.errors import Forbidden, Unauthorized

Operation = Literal["read", "write"]
PREFIX = "/v1/signed/sessions/"
KEY_FILE = "url-signing.key"
KEY_BYTES = 32


def operation_of(method: str) -> Operation:
    return "read" if method in ("GET", "HEAD") else "write"


class UrlSigner:
    """Signs and checks file URLs with one secret."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) != KEY_BYTES:
            raise ValueError(f"the URL secret must be {KEY_BYTES} bytes")
        self._secret = secret

    @classmethod
    def load(cls, state_dir: Path) -> UrlSigner:
        return cls(load_secret(state_dir / KEY_FILE))

    def signature(self, session_id: str, path: str, operation: str, expires: int) -> str:
        message = "\n".join(("lci-file-url-v1", session_id, path, operation, str(expires)))
        digest = hmac.new(self._secret, message.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    def check(
        self, session_id: str, path: str, method: str, query: dict[str, str], now: float
    ) -> None:
        """Unauthorized unless the query's signature is this secret's for exactly this session,
        path, its operation and expiry, and has not expired; Forbidden when it is, but for the
        other operation than `method` performs."""
        operation, raw_expires = query.get("operation", ""), query.get("expires", "")
        if operation not in ("read", "write") or not raw_expires.isdigit():
            raise Unauthorized("a signed URL needs `operation`, `expires` and `signature`")
        expected = self.signature(session_id, path, operation, int(raw_expires))
        presented = query.get("signature", "")
        if not hmac.compare_digest(expected.encode(), presented.encode("utf-8", "replace")):
            raise Unauthorized(
                "invalid signature: the URL was not signed for this session, path, operation "
                "and expiry"
            )
        if int(raw_expires) < now:
            raise Unauthorized("the signed URL has expired")
        if operation != operation_of(method):
            verb = "GET" if operation == "read" else "PUT or POST"
            raise Forbidden(f"this URL was signed to {operation} the file: use {verb}")


def load_secret(path: Path) -> bytes:
    """The secret in `path`, made first (atomically, 0600) when there is none. UnsafeStateDir
    when what is there is a link, not a regular file of this user's, readable by others, or not
    `KEY_BYTES` long."""
    try:
        return _read_secret(path)
    except FileNotFoundError:
        pass
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(
        temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
    )
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(secrets.token_bytes(KEY_BYTES))
        # link(2), unlike rename(2), fails when the name exists: of two engines starting at once
        # the first one's secret wins and the other reads it.
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path, follow_symlinks=False)
    finally:
        temporary.unlink(missing_ok=True)
    return _read_secret(path)


def _read_secret(path: Path) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise UnsafeStateDir(f"cannot open the URL secret {path}: {exc.strerror}") from exc
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
            raise UnsafeStateDir(
                f"the URL secret {path} must be a regular file of this user's, mode 0600"
            )
        secret = handle.read(KEY_BYTES + 1)
    if len(secret) != KEY_BYTES:
        raise UnsafeStateDir(f"the URL secret {path} is not {KEY_BYTES} bytes: remove it")
    return secret


def expiry(expires_in_s: int, now: float | None = None) -> int:
    return int(now if now is not None else time.time()) + expires_in_s
