"""`lci doctor`'s check of the docker backend's OCI runtime (`LCI_DOCKER_RUNTIME`, such as gVisor's
`runsc`): the one check that does something, because a runtime the daemon lists can still fail on
this kernel. It starts one small docker session on the runtime, runs a cell and says what kernel the
cell saw (gVisor answers with its own version, not the host's)."""

from __future__ import annotations

import asyncio
import platform
from typing import TYPE_CHECKING

from engine.errors import LCIError

if TYPE_CHECKING:
    from engine.config import Settings

_PROBE = "import platform; print(platform.release())"
TIMEOUT_S = 120.0


def runtime_check(settings: Settings) -> tuple[bool, str, str]:
    """(works, what was seen or why not, the fix) for the configured runtime; call with one set."""
    runtime = settings.docker_runtime
    try:
        seen = asyncio.run(asyncio.wait_for(_one_cell(settings), TIMEOUT_S))
    except TimeoutError:
        return False, f"no answer from a session within {TIMEOUT_S:g} s", _fix(runtime)
    except LCIError as exc:
        return False, exc.message, _fix(runtime)
    kind = "its own kernel" if seen != platform.release() else "the host's kernel"
    return True, f"{runtime!r} runs sessions here (kernel {seen} seen inside: {kind})", ""


async def _one_cell(settings: Settings) -> str:
    from engine.core.manager import SessionManager
    from engine.models import BackendName, SessionSpec

    quiet = settings.model_copy(update={"docker_warm_pool": 0})
    async with SessionManager(quiet) as manager:
        session = await manager.create(SessionSpec(backend=BackendName.DOCKER))
        result = await session.execute(_PROBE)
        if not result.ok or result.error is not None:
            raise LCIError(f"a cell on the runtime failed: {result.error or result.stderr}")
        return result.stdout.strip()


def _fix(runtime: str | None) -> str:
    return (
        f"register {runtime!r} in the daemon's daemon.json (gVisor: apt-get install runsc; "
        '{"runtimes": {"runsc": {"path": "/usr/bin/runsc", "runtimeArgs": ["--network=none"]}}}, '
        "then reload dockerd), or unset LCI_DOCKER_RUNTIME; see docs/security.md, gVisor"
    )
