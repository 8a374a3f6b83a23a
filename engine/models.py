"""Domain models shared by every layer: limits, requests, executions and their output items, sessions.

These are the engine's own types. Wire formats of the OpenAI/DashScope surfaces live in `engine.server`
and are translated to and from these. Models we own forbid unknown fields so a typo in a request is an
error, not a silently ignored setting.
"""

from __future__ import annotations

import base64
import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

MIB = 1 << 20  # the one definition of a mebibyte for the engine's importable modules


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Limits(_Model):
    """Resource limits of a session. Every limit is enforced by each backend that reports it enforced
    (see `SessionInfo.isolation`); defaults are safe for running untrusted code."""

    timeout_s: float = Field(30.0, gt=0, le=24 * 3600, description="Wall-clock time per execution.")
    cpu_s: float | None = Field(
        None,
        gt=0,
        le=24 * 3600,
        description="CPU seconds per execution (default: the wall timeout).",
    )
    memory_mb: int = Field(
        512, ge=16, le=1 << 20, description="Memory of the whole sandbox (all its processes)."
    )
    max_procs: int = Field(
        64, ge=4, le=1 << 16, description="Processes and threads the sandbox may run at once."
    )
    disk_mb: int = Field(
        256, ge=1, le=1 << 20, description="Size of the writable working directory."
    )
    open_files: int = Field(
        256, ge=32, le=1 << 20, description="Open file descriptors per process."
    )
    output_bytes: int = Field(
        1 * MIB,
        ge=1024,
        le=1 << 30,
        description="stdout+stderr kept per execution (head and tail).",
    )
    network: bool = Field(False, description="Allow network access from the sandbox.")
    cpus: float | None = Field(
        None, gt=0, le=1024, description="CPU cores' worth of time the sandbox may use."
    )

    @property
    def effective_cpu_s(self) -> float:
        return self.cpu_s if self.cpu_s is not None else self.timeout_s


class Outcome(StrEnum):
    """How an execution ended. Only `killed` and `crashed` lose the interpreter state."""

    COMPLETED = "completed"
    ERROR = "error"
    INTERRUPTED = "interrupted"
    KILLED = "killed"
    CRASHED = "crashed"


class StreamOutput(_Model):
    type: Literal["stream"] = "stream"
    name: Literal["stdout", "stderr"]
    text: str


_IMAGE_SUFFIXES = {"image/png": ".png", "image/jpeg": ".jpg", "image/gif": ".gif"}


class _RichOutput(_Model):
    type: Literal["display", "result"]  # narrowed by each subclass; declared first for the order
    data: dict[str, str]
    metadata: dict[str, object] = Field(default_factory=dict)

    @property
    def image_type(self) -> str | None:
        """The MIME type of the image this bundle carries (PNG first), if any."""
        return next((mime for mime in _IMAGE_SUFFIXES if mime in self.data), None)

    @property
    def image(self) -> bytes | None:
        """The image's bytes (decoded from the bundle's base64), if the bundle has one."""
        mime = self.image_type
        return None if mime is None else base64.b64decode(self.data[mime])

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the image to `path`; a path without a suffix gets the image's (`.png` ...)."""
        mime, image = self.image_type, self.image
        if mime is None or image is None:
            raise ValueError(f"this output has no image, only {sorted(self.data)}")
        target = Path(path)
        if not target.suffix:
            target = target.with_suffix(_IMAGE_SUFFIXES[mime])
        target.write_bytes(image)
        return target


class DisplayOutput(_RichOutput):
    """A rich value: a MIME bundle such as {"image/png": <base64>, "text/plain": "<Figure ...>"}."""

    type: Literal["display"] = "display"


class ResultOutput(_RichOutput):
    """The value of the cell's final bare expression, as a MIME bundle."""

    type: Literal["result"] = "result"


class TruncationMarker(_Model):
    """Stands where output was cut to fit the byte budget."""

    type: Literal["truncated"] = "truncated"
    omitted_bytes: int


OutputItem = Annotated[
    StreamOutput | DisplayOutput | ResultOutput | TruncationMarker, Field(discriminator="type")
]


class ErrorInfo(_Model):
    name: str
    value: str
    traceback: str = ""


class Execution(_Model):
    """Everything that happened when one cell ran. Errors in user code are data here, never
    exceptions raised in the host."""

    id: str
    session_id: str
    outcome: Outcome
    stdout: str = ""
    stderr: str = ""
    outputs: list[OutputItem] = Field(default_factory=list)
    error: ErrorInfo | None = None
    state_preserved: bool = True
    duration_ms: float = 0.0
    truncated: bool = False
    limits: Limits
    execution_count: int = Field(0, description="1 for the session's first execution, then 2 ...")

    @property
    def result(self) -> ResultOutput | None:
        for item in self.outputs:
            if isinstance(item, ResultOutput):
                return item
        return None

    @property
    def result_text(self) -> str | None:
        """The displayed value of the final expression as plain text, if there was one."""
        result = self.result
        return None if result is None else result.data.get("text/plain")

    @property
    def displays(self) -> list[DisplayOutput]:
        return [item for item in self.outputs if isinstance(item, DisplayOutput)]

    @property
    def images(self) -> list[bytes]:
        """Every image the cell displayed (and its result, if that is one), in order."""
        rich = (item for item in self.outputs if isinstance(item, DisplayOutput | ResultOutput))
        return [image for item in rich if (image := item.image) is not None]

    def save_images(self, directory: str | os.PathLike[str] = ".", stem: str = "") -> list[Path]:
        """Write every image to `directory` as `<stem>-1.png`, ... (stem: the execution id)."""
        rich = [i for i in self.outputs if isinstance(i, DisplayOutput | ResultOutput) and i.image]
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        return [item.save(folder / f"{stem or self.id}-{n}") for n, item in enumerate(rich, 1)]

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.COMPLETED


class SessionState(StrEnum):
    STARTING = "starting"
    IDLE = "idle"
    BUSY = "busy"
    BROKEN = "broken"
    CLOSED = "closed"


class BackendName(StrEnum):
    SUBPROCESS = "subprocess"
    DOCKER = "docker"


class Isolation(_Model):
    """Which protections a session actually has. A layer the host could not provide is reported
    here as False with a reason in `notes`, never silently dropped."""

    separate_user: bool = False
    pid_namespace: bool = False
    mount_namespace: bool = False
    network_namespace: bool = False
    private_filesystem: bool = False
    memory_limit: Literal["exact", "per_process", "none"] = "none"
    process_limit: Literal["exact", "per_user", "none"] = "none"
    disk_limit: Literal["exact", "per_file", "none"] = "none"
    cpu_quota: bool = False
    syscall_filter: str | None = Field(
        None, description="The seccomp filter sandbox processes run under, if any."
    )
    notes: list[str] = Field(default_factory=list)


class SessionSpec(_Model):
    """What a caller asks for when creating a session."""

    backend: BackendName = BackendName.SUBPROCESS
    limits: Limits = Field(default_factory=Limits)
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment variables.")
    image: str | None = Field(None, description="Container image (docker backend).")


class SessionUsage(_Model):
    """What a session's sandbox has used, as last measured (cgroups or the Docker API). A figure
    the backend cannot measure is None."""

    cpu_s: float | None = Field(None, description="CPU seconds used since the session started.")
    memory_bytes: int | None = Field(None, description="Memory in use now.")
    memory_peak_bytes: int | None = Field(None, description="The most memory in use at once.")
    disk_bytes: int | None = Field(None, description="Bytes used in the working directory.")
    net_rx_bytes: int | None = Field(None, description="Network bytes received.")
    net_tx_bytes: int | None = Field(None, description="Network bytes sent.")
    measured_at: float = Field(description="When it was measured (Unix time).")


class SessionInfo(_Model):
    id: str
    backend: BackendName
    state: SessionState
    limits: Limits
    isolation: Isolation
    workdir: str
    created_at: float
    last_used_at: float
    executions: int = 0
    restarts: int = 0
    node_id: str | None = Field(None, description="The Ray node it runs on; None when local.")
    node_ip: str | None = Field(None, description="That node's address; None when local.")
    usage: SessionUsage | None = Field(
        None, description="What the sandbox used, as last measured; None when never measured."
    )


class SnapshotInfo(_Model):
    """A kept state of a live session: its interpreter (a frozen copy-on-write fork, every object
    included) and its working directory (a copy within the session's disk limit)."""

    id: str
    session_id: str
    created_at: float
    executions: int = Field(description="Cells the session had run when it was taken.")
    memory_bytes: int | None = Field(
        None,
        description="Memory only this snapshot holds (pages the session changed since it was "
        "taken); None when it could not be measured.",
    )
    disk_bytes: int = Field(description="Bytes of its copy of the working directory.")
    files: int = Field(description="Files in that copy.")


class ForkResult(_Model):
    """One new session forked from a live one: what of the interpreter's state it received."""

    session: SessionInfo
    kept: list[str] = Field(description="Names of the namespace carried into the new session.")
    not_kept: dict[str, str] = Field(
        default_factory=dict,
        description="Names that could not cross into a new sandbox, each with the reason.",
    )


class ExecuteRequest(_Model):
    code: str = Field(max_length=4 * MIB)
    timeout_s: float | None = Field(None, gt=0, le=24 * 3600)
    wait: bool = Field(False, description="Queue behind a running execution instead of failing.")


class FileInfo(_Model):
    path: str
    size: int
    modified_at: float


class FileEntry(_Model):
    """One entry of a session's workdir: a file, directory, symlink (never followed) or other."""

    name: str
    path: str = Field(description="Relative to the working directory; '' for the directory itself.")
    type: Literal["file", "dir", "symlink", "other"]
    size: int
    mode: int = Field(description="Permission bits (e.g. 0o644).")
    permissions: str = Field(description="As `ls -l` shows them, e.g. '-rw-r--r--'.")
    owner: str
    group: str
    modified_at: float
    symlink_target: str | None = Field(None, description="What a symlink points to, as written.")
    metadata: dict[str, str] | None = Field(
        None, description="User metadata (extended attributes)."
    )
    inode: int = Field(0, description="Identifies the entry across renames.")
    modified_ns: int = Field(0, description="The modification time in nanoseconds.")


class SignedUrl(_Model):
    """A URL that reads or writes one file of a session without the API key, until it expires."""

    url: str = Field(description="Absolute, as the signing request addressed the server.")
    method: str = Field(description="What to send it with: GET, or PUT (POST works as well).")
    path: str = Field(description="The file, relative to the working directory.")
    expires_at: int = Field(description="Unix seconds.")


class FileEvent(_Model):
    """A change seen by a directory watcher."""

    type: Literal["create", "write", "remove", "rename", "chmod"]
    path: str = Field(description="Relative to the watched directory.")
    entry: FileEntry | None = Field(None, description="The entry now; None once it is gone.")
