"""What every subcommand shares: settings and limits read with one-line errors, and checked paths.

A configuration mistake is the user's, not a bug: it ends the command with one line saying what is
wrong and what is allowed (exit status 2), never with a traceback.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import ValidationError

from engine.models import Limits

if TYPE_CHECKING:
    from engine.config import Settings

M = TypeVar("M")

# `lci exec` options that set a Limits field, by field (the flag names users type).
LIMIT_FLAGS: dict[str, str] = {
    "timeout_s": "--timeout",
    "cpu_s": "--cpu-s",
    "memory_mb": "--memory-mb",
    "max_procs": "--max-procs",
    "disk_mb": "--disk-mb",
    "open_files": "--open-files",
    "output_bytes": "--output-bytes",
    "cpus": "--cpus",
    "network": "--network",
}


class UsageError(Exception):
    """A mistake in the command line or the environment: printed as `lci: <message>`, exit 2."""


def describe(exc: ValidationError, name: Callable[[tuple[int | str, ...]], str]) -> str:
    """A validation error as one line: `<name>: <what is allowed> (got <value>)` per problem."""
    parts = []
    for error in exc.errors():
        message = error["msg"]
        if not error["loc"]:  # a check of the whole model: its message names the fields itself
            parts.append(message.removeprefix("Value error, "))
            continue
        message = re.sub(r"^(Input should be|Value error, )\s*", "must be ", message)
        message = message.replace("must be must be", "must be")
        got = error.get("input")
        shown = "" if isinstance(got, dict) or error["type"] == "missing" else f" (got {got!r})"
        parts.append(f"{name(tuple(error['loc']))} {message}{shown}")
    return "; ".join(parts)


def _env_name(loc: tuple[int | str, ...]) -> str:
    head, *rest = loc or ("?",)
    return "LCI_" + str(head).upper() + "".join(f".{part}" for part in rest)


def load_settings(**overrides: Any) -> Settings:
    """`Settings` from the environment and `overrides`, or a UsageError naming the variable."""
    # Imported when needed: pydantic-settings is a tenth of `lci --version` otherwise.
    from pydantic_settings import SettingsError

    from engine.config import Settings

    try:
        return Settings(**overrides)
    except SettingsError as exc:
        field = re.search(r'field "([^"]+)"', str(exc))
        variable = "LCI_" + (field.group(1).upper() if field else "?")
        raise UsageError(
            f"{variable} is not valid JSON (e.g. {variable}='{_EXAMPLES.get(variable, '...')}')"
        ) from None
    except ValidationError as exc:
        # A check across fields names them as Settings does (`limits.memory_mb`, `max_limits`):
        # say the variables that set them.
        text = re.sub(r"\bmax_limits\b", "LCI_MAX_LIMITS", describe(exc, _env_name))
        raise UsageError(re.sub(r"(?<![\w.])limits\.", "LCI_LIMITS.", text)) from None


_EXAMPLES = {"LCI_LIMITS": '{"timeout_s": 30, "memory_mb": 512}', "LCI_PRELOAD": '["numpy"]'}


def limits_with(base: Limits, changes: Mapping[str, object]) -> Limits:
    """`base` with the given fields changed, validated like a server request: the offending
    option is named (`--memory-mb must be greater than or equal to 16 (got 1)`)."""
    try:
        return Limits.model_validate({**base.model_dump(), **changes})
    except ValidationError as exc:
        raise UsageError(
            describe(exc, lambda loc: LIMIT_FLAGS.get(str(loc[0]), str(loc[0])) if loc else "?")
        ) from None


def writable_dir(path: Path, option: str) -> Path:
    """`path` created if needed and checked writable now, not when the first image is saved."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{option} {path}: cannot create it ({exc.strerror})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {path}: not writable")
    return path


def puts_of(specs: list[str]) -> list[tuple[Path, str]]:
    """`--put LOCAL[:PATH]` options as (local file, path in the working directory)."""
    puts = []
    for spec in specs:
        local, _, target = spec.partition(":")
        path = Path(local)
        if not path.is_file():
            raise UsageError(f"--put {spec}: no such local file")
        puts.append((path, target or path.name))
    return puts


def gets_of(specs: list[str], out_dir: Path) -> list[tuple[str, Path]]:
    """`--get PATH[:LOCAL]` options as (path in the working directory, local file)."""
    gets = []
    for spec in specs:
        remote, _, local = spec.partition(":")
        if not remote:
            raise UsageError(f"--get {spec!r}: give the path of a file in the working directory")
        gets.append((remote, Path(local) if local else out_dir / Path(remote).name))
    return gets


def build(
    model: Callable[..., M], values: Mapping[str, object], flags: Mapping[str, str], env_prefix: str
) -> M:
    """`model(**values)` (a settings class or an options model), or a UsageError that names the
    command-line option when the value came from one, else the environment variable."""
    from pydantic_settings import SettingsError

    def name(loc: tuple[int | str, ...]) -> str:
        field = str(loc[0]) if loc else "?"
        if values.get(field) is not None and field in flags:
            return flags[field]
        return env_prefix + field.upper()

    try:
        return model(**{k: v for k, v in values.items() if v is not None})
    except SettingsError as exc:
        raise UsageError(f"{env_prefix}*: {exc}") from None
    except ValidationError as exc:
        raise UsageError(describe(exc, name)) from None


def secret_option(
    value: str | None, option: str, file: Path | None, file_option: str
) -> str | None:
    """The model server's key from `file_option`'s file (its first line), or None (the environment's
    `LCI_LLM_API_KEY` then applies). A key given as `option` itself is refused: every local user can
    read a command line in /proc/<pid>/cmdline."""
    if value is not None:
        raise UsageError(
            f"{option} is not accepted: every local user can read the command line. Set "
            f"LCI_LLM_API_KEY in the environment or use {file_option} FILE."
        )
    if file is None:
        return None
    try:
        info = file.stat()
        lines = file.read_text().splitlines()
    except OSError as exc:
        raise UsageError(f"{file_option} {file}: cannot read it ({exc.strerror})") from None
    if info.st_mode & 0o022:
        raise UsageError(f"{file_option} {file} is writable by other users; chmod go-w it")
    key = lines[0].strip() if lines else ""
    if not key:
        raise UsageError(f"{file_option} {file}: the first line holds no key")
    return key
