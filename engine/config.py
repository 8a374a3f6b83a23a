"""Typed settings, read from `LCI_*` environment variables (and overridable in code)."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, SettingsConfigDict

from engine.errors import BadParameter
from engine.models import MIB, BackendName, Limits

# The maximum of each limit unless the operator sets it. A limit not named here is capped only by
# its own bound in `Limits` (its `le`), and a switch (`network`) is allowed.
_DEFAULT_MAXIMA: dict[str, Any] = {
    "timeout_s": 3600.0,
    "cpu_s": 3600.0,
    "memory_mb": 8192,
    "max_procs": 1024,
    "disk_mb": 8192,
    "open_files": 4096,
    "output_bytes": 16 * MIB,
    "cpus": None,  # no cap beyond the machine
    "network": True,
}


def _unlisted_maximum(field: FieldInfo) -> Any:
    if field.annotation is bool:
        return True
    return next((m.le for m in field.metadata if hasattr(m, "le")), None)  # Field(le=...)


class LimitMaxima(Limits):
    """The most a client may ask for (`LCI_MAX_LIMITS`, `lci serve --max-*`). A session asking for
    more is refused with a 400 naming the limit, on every surface: the limits are never silently
    lowered, since code written for a bigger budget would fail in confusing ways.

    The fields are those of `Limits`, with their types and bounds, so a new limit is capped here
    as soon as it exists. A maximum of None is no cap; a switch's maximum False forbids it."""

    @model_validator(mode="before")
    @classmethod
    def _maxima_by_default(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        defaults = {
            name: _DEFAULT_MAXIMA[name] if name in _DEFAULT_MAXIMA else _unlisted_maximum(field)
            for name, field in Limits.model_fields.items()
        }
        return {**defaults, **data}

    def check(self, limits: Limits, where: str = "limits") -> None:
        """BadParameter naming every limit of `limits` above its maximum."""
        over = []
        for name in Limits.model_fields:
            value, cap = getattr(limits, name), getattr(self, name)
            if isinstance(value, bool):
                if value and not cap:
                    over.append(f"{where}.{name} is not allowed on this server")
            elif value is not None and cap is not None and value > cap:
                over.append(f"{where}.{name} {value} exceeds the server's maximum {cap}")
        if over:
            raise BadParameter("; ".join(over), where)


def _default_state_dir() -> Path:
    """`<tmp>/lci-<euid>`: one per user, so a second user of the machine (or one `sudo lci`) does
    not find a directory another uid made, which the engine rightly refuses. Not
    `$XDG_RUNTIME_DIR`: that is a small tmpfs shared with the user's login session, while this
    directory holds sandbox workdirs and uploads that can fill it."""
    return Path(tempfile.gettempdir()) / f"lci-{os.geteuid()}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LCI_", extra="ignore")

    # Sessions
    backend: BackendName = BackendName.SUBPROCESS
    limits: Limits = Field(default_factory=Limits)
    max_limits: LimitMaxima = Field(
        default_factory=LimitMaxima, description="The most a session may ask for."
    )
    max_sessions: int = Field(64, ge=1)
    memory_budget_mb: int | None = Field(
        None,
        ge=64,
        description="Memory all live sessions may use together, each charged memory_mb + disk_mb "
        "(default: 80% of the host's RAM). A session past it is refused (429).",
    )
    max_sessions_per_owner: int | None = Field(
        None, ge=1, description="Live sessions one API key may hold (default: no quota)."
    )
    max_snapshots_per_session: int = Field(
        8,
        ge=0,
        le=64,
        description="Snapshots one session may keep at once (each holds the memory its session "
        "changed since, and a copy of its workdir within disk_mb); 0 turns snapshots off.",
    )
    max_concurrent_executions: int | None = Field(
        None,
        ge=1,
        description="Cells running at once across all sessions (default: 4 per CPU core).",
    )
    execution_wait_s: float = Field(
        10.0, ge=0, description="How long a cell waits for a free execution slot before a 429."
    )
    idle_timeout_s: float = Field(1800.0, gt=0, description="Close sessions unused this long.")
    interrupt_grace_s: float = Field(
        1.0, gt=0, description="How long an interrupted cell gets to stop before it is killed."
    )
    state_dir: Path = Field(default_factory=_default_state_dir)

    # Subprocess backend
    sandbox_python: str = Field(default_factory=lambda: sys.executable)
    sandbox_uid_base: int = Field(
        1_500_000_000, ge=1000, description="Per-session uids are allocated from here (when root)."
    )
    extra_readonly_paths: list[str] = Field(
        default_factory=list, description="Host paths made visible read-only inside sandboxes."
    )
    seccomp: bool = Field(
        True,
        description="Apply the syscall filter in subprocess sandboxes (LCI_SECCOMP=0 turns it off, "
        "only to measure what it costs).",
    )
    forkserver: bool = Field(
        True, description="Start subprocess sessions from a fork server with modules preloaded."
    )
    preload: list[str] = Field(
        default_factory=lambda: ["numpy", "pandas", "matplotlib.pyplot", "IPython"],
        description="Modules imported ahead of time (missing ones are skipped): once by the fork "
        "server for every subprocess session, and by each pooled docker container while it waits.",
    )
    subprocess_warm_pool: int = Field(
        2, ge=0, description="Subprocess sandboxes kept started ahead of time (0: none)."
    )
    require_isolation: bool = Field(
        False, description="Refuse to start a session whose sandbox lacks namespaces or cgroups."
    )

    # Docker backend
    docker_image: str = "lci-sandbox:latest"
    docker_runtime: str | None = Field(
        None,
        description="The Docker daemon's OCI runtime for sandbox containers, as registered in its "
        "daemon.json (e.g. `runsc`, gVisor: a kernel of its own between sandbox code and the "
        "host's); default: the daemon's default runtime.",
    )
    docker_warm_pool: int = Field(2, ge=0, description="Started containers per image's pool.")
    docker_max_pools: int = Field(
        3, ge=0, description="Warm pools at most (one per image id; the default image's is kept)."
    )
    docker_pool_idle_s: float = Field(
        600.0, gt=0, description="Another image's pool is closed after this long unclaimed."
    )

    # Ray cluster (engine.cluster): sessions as actors on the cluster's nodes, any replica serves any.
    ray_address: str | None = Field(
        None, description="Run sessions on this Ray cluster (e.g. 10.0.0.5:6379); None: locally."
    )
    ray_namespace: str = Field("lci", min_length=1, description="The Ray namespace of sessions.")
    ray_allow_network: bool = Field(
        False,
        description="Allow network=True sessions on a Ray cluster. Only where sandboxes cannot "
        "reach Ray's ports (a firewall drops them): whoever reaches Ray runs code on every node.",
    )
    ray_call_timeout_s: float = Field(
        10.0, gt=0, description="A session's actor that does not answer this long is lost (410)."
    )
    ray_placement_timeout_s: float = Field(
        30.0, gt=0, description="A session no node can take within this long is refused (429)."
    )

    # Upstream model (orchestrator)
    llm_base_url: str = "http://127.0.0.1:8080/v1"
    llm_model: str = "default"
    llm_api_key: str = "none"
    llm_read_timeout_s: float = Field(
        300.0,
        gt=0,
        description="Longest silence from the model server within a round before it counts as a "
        "failed round (a hung model server): generous, since a busy one may think long.",
    )

    # HTTP server. Keys come from the environment or a file, never the command line (which every
    # local user can read in /proc/<pid>/cmdline).
    api_key: str | None = Field(None, description="A client key (principal `default`).")
    api_key_file: Path | None = Field(
        None, description="A file of client keys, one per line: `KEY` or `NAME KEY`."
    )

    @model_validator(mode="after")
    def _defaults_within_maxima(self) -> Settings:
        try:
            self.max_limits.check(self.limits)
        except BadParameter as exc:
            raise ValueError(f"the default limits exceed max_limits: {exc.message}") from None
        return self
