"""The server's uploaded files (`/v1/files`): kept on disk under the state directory, so they outlive a
restart, with a cap on one file and a quota per key (API key principal): the store's total divided
by the number of keys, so that the quotas together fit the total and one key filling its share never
makes another key's upload fail. Refusals name only the key's own quota, never the store's totals
(which would tell a key how much the others keep).

    <state_dir>/files/file-<hex>        the bytes
    <state_dir>/files/file-<hex>.json   what the API reports of it (name, purpose, size, times)

Both are written to a temporary name and renamed, so a crash never leaves a half file behind a
record. Both are read without following links, and only as regular files: a record or content
planted as a symlink (to /etc/shadow, say) is skipped, never served. The directory itself is
this user's and private (`core.state_dir`), checked before the server starts. Sizes are reserved under a lock before writing, so concurrent uploads cannot together pass
the cap.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import secrets
import stat
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from engine.core.state_dir import prepare_private_dir, prepare_state_dir
from engine.errors import BadParameter, FileNotFound, PayloadTooLarge

log = logging.getLogger(__name__)

PURPOSES = frozenset({"assistants", "batch", "fine-tune", "vision", "user_data", "evals"})
MAX_NAME_BYTES = 255
_ID_CHARS = frozenset("0123456789abcdef")


def clean_filename(name: str | None, param: str) -> str:
    """The last component of an uploaded file's name, refused when it cannot name a file."""
    base = PurePosixPath((name or "").replace("\\", "/")).name
    if not base or base in (".", ".."):
        raise BadParameter("the file needs a name", param)
    if any(ord(char) < 32 for char in base):
        raise BadParameter("file names cannot contain control characters", param)
    if len(base.encode()) > MAX_NAME_BYTES:
        raise BadParameter(f"file names are limited to {MAX_NAME_BYTES} bytes", param)
    return base


@dataclass
class StoredFile:
    id: str
    filename: str
    purpose: str
    bytes: int
    created_at: float
    expires_at: float | None = None
    owner: str = ""  # the principal of the API key that uploaded it; other keys never see it

    def wire(self) -> dict[str, Any]:
        """The OpenAI `file` object."""
        return {
            "id": self.id,
            "object": "file",
            "bytes": self.bytes,
            "created_at": int(self.created_at),
            "expires_at": None if self.expires_at is None else int(self.expires_at),
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "status_details": None,
        }


class FileStore:
    def __init__(
        self, root: Path, *, max_file_bytes: int, max_total_bytes: int, keys: int = 1
    ) -> None:
        self.root = root
        self.max_file_bytes = max_file_bytes
        self.max_total_bytes = max_total_bytes
        self.quota_bytes = max_total_bytes // max(1, keys)  # what one key may keep
        self._files: dict[str, StoredFile] = {}
        self._reserved: Counter[str] = Counter()  # bytes of uploads being written, per key
        self._lock = asyncio.Lock()
        prepare_state_dir(root.parent)
        prepare_private_dir(root, "file store")
        self._load()

    def _load(self) -> None:
        for meta in self.root.glob("file-*.json"):
            try:
                record = StoredFile(**json.loads(_read_regular(meta)))
            except (OSError, ValueError, TypeError) as exc:
                log.warning("skipping unreadable file record %s: %s", meta, exc)
                continue
            if _valid_id(record.id) and _is_regular(self._content(record.id)):
                self._files[record.id] = record
        self._purge()

    @property
    def used_bytes(self) -> int:
        return sum(f.bytes for f in self._files.values()) + self._reserved.total()

    def used_by(self, owner: str) -> int:
        kept = sum(f.bytes for f in self._files.values() if f.owner == owner)
        return kept + self._reserved[owner]

    async def put(
        self,
        filename: str,
        purpose: str,
        data: bytes,
        expires_after_s: int | None = None,
        owner: str = "",
    ) -> StoredFile:
        if purpose not in PURPOSES:
            raise BadParameter(f"purpose must be one of {', '.join(sorted(PURPOSES))}", "purpose")
        if len(data) > self.max_file_bytes:
            raise PayloadTooLarge(f"the file is larger than {self.max_file_bytes} bytes")
        async with self._lock:
            self._purge()
            if self.used_by(owner) + len(data) > self.quota_bytes:
                raise PayloadTooLarge(
                    f"this key's share of the file store is full (its quota is {self.quota_bytes} "
                    "bytes); delete files first"
                )
            if self.used_bytes + len(data) > self.max_total_bytes:  # files of keys now removed
                raise PayloadTooLarge("the file store is full; delete files first")
            self._reserved[owner] += len(data)
        now = time.time()
        record = StoredFile(
            id=f"file-{secrets.token_hex(12)}",
            filename=filename,
            purpose=purpose,
            bytes=len(data),
            created_at=now,
            expires_at=None if expires_after_s is None else now + expires_after_s,
            owner=owner,
        )
        try:
            await asyncio.to_thread(self._write, record, data)
        finally:
            self._reserved[owner] -= len(data)
        self._files[record.id] = record
        return record

    def get(self, file_id: str, owner: str | None = None) -> StoredFile:
        """The file; with `owner`, another key's file is not found, as one that does not exist."""
        self._purge()
        record = self._files.get(file_id)
        if record is None or (owner is not None and record.owner != owner):
            raise FileNotFound(f"No such File object: {file_id}")
        return record

    async def read(self, file_id: str, owner: str | None = None) -> bytes:
        record = self.get(file_id, owner)
        try:
            return await asyncio.to_thread(_read_regular, self._content(record.id))
        except OSError:  # gone, or no longer a regular file of ours
            self._files.pop(file_id, None)
            raise FileNotFound(f"No such File object: {file_id}") from None

    async def delete(self, file_id: str, owner: str | None = None) -> None:
        record = self.get(file_id, owner)
        self._files.pop(record.id, None)
        await asyncio.to_thread(self._remove, record.id)

    def all(self, owner: str | None = None) -> list[StoredFile]:
        self._purge()
        return [f for f in self._files.values() if owner is None or f.owner == owner]

    # -- disk ----------------------------------------------------------------------------------
    def _content(self, file_id: str) -> Path:
        return self.root / file_id

    def _write(self, record: StoredFile, data: bytes) -> None:
        content, meta = self._content(record.id), self.root / f"{record.id}.json"
        _atomic_write(content, data)
        try:
            _atomic_write(meta, json.dumps(asdict(record)).encode())
        except BaseException:
            content.unlink(missing_ok=True)
            raise

    def _remove(self, file_id: str) -> None:
        (self.root / f"{file_id}.json").unlink(missing_ok=True)  # the record first: no orphan
        self._content(file_id).unlink(missing_ok=True)

    def _purge(self) -> None:
        """Forget files whose expiry passed (their bytes are removed with them)."""
        now = time.time()
        for record in [f for f in self._files.values() if f.expires_at and f.expires_at <= now]:
            self._files.pop(record.id, None)
            with contextlib.suppress(OSError):
                self._remove(record.id)


def _atomic_write(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _read_regular(path: Path) -> bytes:
    """The bytes of `path`, refusing a symlink (ELOOP) or anything but a regular file."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        return handle.read()


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except OSError:
        return False


def _valid_id(file_id: str) -> bool:
    return file_id.startswith("file-") and set(file_id[5:]) <= _ID_CHARS and len(file_id) == 29
