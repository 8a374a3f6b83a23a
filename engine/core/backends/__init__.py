"""The sandbox backends, one folder each with mirrored module names (backend, host, sandbox, ...).
Backends never import each other; this chooser imports the chosen one lazily, so `import engine`
never imports the docker SDK and a host without Docker still serves subprocess sessions."""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.models import BackendName

if TYPE_CHECKING:
    from engine.config import Settings
    from engine.core.sandbox import Backend


def create_backend(name: BackendName, settings: Settings) -> Backend:
    if name is BackendName.SUBPROCESS:
        from engine.core.backends.subprocess.backend import SubprocessBackend

        return SubprocessBackend(settings)
    if name is BackendName.DOCKER:
        from engine.core.backends.docker.backend import DockerBackend

        return DockerBackend(settings)
    raise ValueError(f"unknown backend {name!r}")
