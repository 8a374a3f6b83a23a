"""Shared fixtures: a real SessionManager per test, and the behavioural suite parametrized over both
backends. The docker backend runs where a daemon and the sandbox image are available; outside CI a
missing daemon skips with the reason, in CI (CI=true) it fails."""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from engine.config import Settings
from engine.core.manager import SessionManager
from engine.core.session import Session
from engine.models import BackendName, Limits, SessionSpec

IN_CI = os.environ.get("CI", "").lower() == "true"
BACKENDS = [BackendName.SUBPROCESS, BackendName.DOCKER]


def docker_unavailable_reason(settings: Settings) -> str | None:
    from engine.core.backends.docker.api import unavailable_reason

    return unavailable_reason(settings.docker_image)


@functools.cache
def docker_on_gvisor() -> bool:
    """Whether the docker backend runs its containers under gVisor here: LCI_DOCKER_RUNTIME names
    a runtime that the daemon runs with `runsc` (how CI runs the docker suite a second time)."""
    from engine.core.backends.docker.api import DockerAPI
    from engine.core.backends.docker.spec import is_gvisor

    runtime = Settings().docker_runtime
    if runtime is None or docker_unavailable_reason(Settings()) is not None:
        return False
    api = DockerAPI(timeout_s=30)
    try:
        return is_gvisor(api.runtime_program(runtime))
    finally:
        api.close()


def on_gvisor(session: Session) -> bool:
    """Whether `session` runs under gVisor (a docker session where `docker_on_gvisor`)."""
    return session.info().backend is BackendName.DOCKER and docker_on_gvisor()


def skip_on_gvisor(session: Session, reason: str) -> None:
    """Skip (saying why) a test whose claim is about a host-kernel mechanism that gVisor
    replaces, when `session` runs under gVisor; the same test on the other backend still runs."""
    if on_gvisor(session):
        pytest.skip(f"not under gVisor: {reason}")


def gvisor_differs(reason: str, run: bool = True) -> pytest.MarkDecorator:
    """Marks a test that fails under gVisor for a reason found and named, not yet fixed: an
    expected failure there (strict: once it passes, the mark must go; `run=False` for one that
    would only hang until its timeout), run as usual elsewhere."""
    return pytest.mark.xfail(
        docker_on_gvisor(), reason=f"under gVisor: {reason}", strict=True, run=run
    )


def not_on_gvisor(reason: str) -> pytest.MarkDecorator:
    """Marks a docker test whose claim is about the host kernel's mechanisms, which gVisor
    replaces: skipped on gVisor with `reason` (shown in the run's summary), run everywhere else."""
    return pytest.mark.skipif(docker_on_gvisor(), reason=f"not under gVisor: {reason}")


# Small limits keep the attack tests fast. Under gVisor a container's memory limit also pays for
# the user-space kernel (with the ptrace platform about 10 MiB per sandbox process: 28 forked
# interpreters fill 256 MiB), so there the same tests get 1 GiB; and more time, as every
# syscall is a round trip through gVisor's kernel (with the ptrace platform, several host ones).
TEST_LIMITS = Limits(
    timeout_s=20 if docker_on_gvisor() else 5,  # gVisor's ptrace platform: slow syscalls
    memory_mb=1024 if docker_on_gvisor() else 256,
    max_procs=32,
    disk_mb=32,
    output_bytes=64 * 1024,
)


def require_docker(settings: Settings) -> None:
    reason = docker_unavailable_reason(settings)
    if reason is None:
        return
    if IN_CI:
        pytest.fail(f"Docker is required in CI: {reason}")
    pytest.skip(f"Docker unavailable: {reason}")


def require_root_tools(*commands: str) -> None:
    """Root and `commands` (namespaces, a private dockerd): a skip without them, a failure in CI."""
    reason = None
    if os.geteuid() != 0:
        reason = "needs root"
    for command in commands:
        if shutil.which(command) is None:
            reason = reason or f"needs {command}"
    if reason is not None:
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        state_dir=tmp_path / "state", limits=TEST_LIMITS, interrupt_grace_s=0.5, docker_warm_pool=0
    )


@pytest.fixture(params=BACKENDS, ids=[b.value for b in BACKENDS])
def backend(request: pytest.FixtureRequest, settings: Settings) -> BackendName:
    name: BackendName = request.param
    if name is BackendName.DOCKER:
        require_docker(settings)
    return name


@pytest.fixture
async def manager(settings: Settings) -> AsyncIterator[SessionManager]:
    async with SessionManager(settings) as manager:
        yield manager


SessionFactory = Callable[..., Awaitable[Session]]


@pytest.fixture
async def make_session(manager: SessionManager, backend: BackendName) -> SessionFactory:
    if backend is BackendName.SUBPROCESS and manager.settings.forkserver:
        subprocess_backend = await manager.backend(backend)
        assert await subprocess_backend.wait_forkserver(60), "the fork server did not start"  # type: ignore[attr-defined]

    async def make(**limit_overrides: Any) -> Session:
        limits = TEST_LIMITS.model_copy(update=limit_overrides)
        return await manager.create(SessionSpec(backend=backend, limits=limits))

    return make


@pytest.fixture
async def session(make_session: SessionFactory) -> Session:
    return await make_session()
