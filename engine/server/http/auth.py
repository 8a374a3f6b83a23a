"""Who a request comes from: the API keys the server accepts, each naming a principal.

Keys come from `LCI_API_KEY` (principal `default`) and from a keys file (`--api-key-file`,
`LCI_API_KEY_FILE`): one key per line, either `KEY` alone or `NAME KEY`; blank lines and lines
starting with `#` are skipped. Never from the command line, where every local user can read them
(`/proc/<pid>/cmdline`). Sessions belong to the principal that created them (see `runtime/runner.py`);
with no keys at all every request is the anonymous principal `""`.
"""

from __future__ import annotations

import hashlib
import hmac
import stat
from dataclasses import dataclass
from pathlib import Path

from starlette.types import Scope

PRINCIPAL = "lci.principal"  # the scope key the gate sets for the routes
ANONYMOUS = ""


class KeyFileError(ValueError):
    """A keys file that cannot be used; the message says why."""


@dataclass(frozen=True)
class KeyRing:
    """Key digests to principal names. Digests have one length, so comparing them all in constant
    time reveals neither a key nor which one matched."""

    keys: tuple[tuple[bytes, str], ...]

    @classmethod
    def load(cls, api_key: str | None, key_file: Path | None) -> KeyRing | None:
        """The keys of the environment and the file; None when there are none (auth off)."""
        named: list[tuple[str, str]] = []
        if api_key:
            named.append(("default", api_key))
        if key_file is not None:
            named += read_key_file(key_file)
        if not named:
            return None
        names = [name for name, _ in named]
        if len(set(names)) != len(names):
            raise KeyFileError("two keys share a name; each key needs its own")
        return cls(tuple((_digest(key), name) for name, key in named))

    def identify(self, token: str) -> str | None:
        """The principal holding `token`, or None."""
        digest = _digest(token)
        found = None
        for known, name in self.keys:
            if hmac.compare_digest(digest, known):
                found = name
        return found


def read_key_file(path: Path) -> list[tuple[str, str]]:
    """(name, key) pairs from a keys file. A file other users could write is refused."""
    try:
        info = path.stat()
        text = path.read_text()
    except OSError as exc:
        raise KeyFileError(f"cannot read the keys file {path}: {exc.strerror}") from exc
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise KeyFileError(f"the keys file {path} is writable by other users; chmod go-w it")
    pairs: list[tuple[str, str]] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) == 1:
            # A key without a name is named by its digest, so logs never show the key itself.
            pairs.append((f"key-{_digest(fields[0]).hex()[:8]}", fields[0]))
        elif len(fields) == 2:
            pairs.append((fields[0], fields[1]))
        else:
            raise KeyFileError(f"{path}:{number}: expected `KEY` or `NAME KEY`")
    if not pairs:
        raise KeyFileError(f"the keys file {path} holds no key")
    return pairs


def principal_of(scope: Scope) -> str:
    """The principal the gate found for this request."""
    principal: str = scope.get(PRINCIPAL, ANONYMOUS)
    return principal


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()
