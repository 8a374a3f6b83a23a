"""Domain models shared by every layer: limits, requests, executions and their output items, sessions.

These are the engine's own types. Wire formats of the OpenAI/DashScope surfaces live in `engine.server`
and are translated to and from these. Models we own forbid unknown fields so a typo in a request is an
error, not a silently ignored setting.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

MIB = 1 << 20


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


class DisplayOutput(_Model):
    """A rich value: a MIME bundle such as {"image/png": <base64>, "text/plain": "<Figure ...>"}."""

    type: Literal["display"] = "display"
    data: dict[str, str]
    metadata: dict[str, object] = Field(default_factory=dict)


class ResultOutput(_Model):
    """The value of the cell's final bare expression, as a MIME bundle."""

    type: Literal["result"] = "result"
    data: dict[str, str]
    metadata: dict[str, object] = Field(default_factory=dict)


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
    notes: list[str] = Field(default_factory=list)


class SessionSpec(_Model):
    """What a caller asks for when creating a session."""

    backend: BackendName = BackendName.SUBPROCESS
    limits: Limits = Field(default_factory=Limits)
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment variables.")
    image: str | None = Field(None, description="Container image (docker backend).")


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


class ExecuteRequest(_Model):
    code: str = Field(max_length=4 * MIB)
    timeout_s: float | None = Field(None, gt=0, le=24 * 3600)
    wait: bool = Field(False, description="Queue behind a running execution instead of failing.")


class FileInfo(_Model):
    path: str
    size: int
    modified_at: float
