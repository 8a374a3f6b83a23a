"""Typed settings, read from `LCI_*` environment variables (and overridable in code)."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from engine.models import BackendName, Limits


def _default_state_dir() -> Path:
    return Path(tempfile.gettempdir()) / "lci"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LCI_", extra="ignore")

    # Sessions
    backend: BackendName = BackendName.SUBPROCESS
    limits: Limits = Field(default_factory=Limits)
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
    forkserver: bool = Field(
        True, description="Start subprocess sessions from a fork server with modules preloaded."
    )
    preload: list[str] = Field(
        default_factory=lambda: ["numpy", "pandas", "matplotlib.pyplot"],
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
    docker_warm_pool: int = Field(2, ge=0)

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

    # HTTP server
    api_key: str | None = None
