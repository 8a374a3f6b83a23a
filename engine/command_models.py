"""The wire and API models of commands run beside the interpreter (see `engine/core/commands.py`)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

MIB = 1 << 20
EnvName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=256)]
EnvValue = Annotated[str, StringConstraints(pattern=r"^[^\x00]*$", max_length=MIB)]
Arg = Annotated[str, StringConstraints(pattern=r"^[^\x00]*$", max_length=MIB)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PtySize(_Model):
    cols: int = Field(80, ge=1, le=1000)
    rows: int = Field(24, ge=1, le=1000)


class CommandRequest(_Model):
    """A command to run in a session's sandbox, as its user, in its working directory."""

    cmd: Arg = Field(
        description="A shell command line (run by `/bin/bash -l -c`), or with `args` the program."
    )
    args: list[Arg] | None = Field(
        None, max_length=4096, description="Run `cmd` with these arguments, without a shell."
    )
    env: dict[EnvName, EnvValue] = Field(default_factory=dict, max_length=1024)
    cwd: Arg | None = Field(None, description="Working directory (default: the session's).")
    timeout_s: float | None = Field(
        None,
        gt=0,
        le=24 * 3600,
        description="Kill it after this long (default: the session's timeout; background: none).",
    )
    stdin: bool = Field(False, description="Keep its stdin open for input (else /dev/null).")
    pty: PtySize | None = Field(None, description="Run it on a terminal of this size.")
    tag: Annotated[str, StringConstraints(max_length=256)] | None = Field(
        None, description="A name to find it by (unique among the session's running commands)."
    )
    background: bool = Field(
        False, description="Answer at once with its pid instead of waiting for its end."
    )


class CommandInfo(_Model):
    id: str
    pid: int = Field(description="Its process id inside the sandbox.")
    cmd: str
    args: list[str] | None = None
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    tag: str | None = None
    pty: bool = False
    started_at: float
    running: bool = True
    exit_code: int | None = Field(None, description="Negative: killed by that signal.")


class CommandResult(_Model):
    """How a command ended (or, for one still running, what it wrote so far)."""

    id: str
    pid: int
    exit_code: int | None = Field(None, description="None while running; negative: signal.")
    stdout: str = ""
    stderr: str = ""
    timed_out: bool = False
    truncated: bool = Field(False, description="Its output passed the session's output limit.")
    error: str | None = Field(None, description="Why it ended other than by itself.")
    duration_s: float = 0.0
