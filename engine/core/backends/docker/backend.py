"""The docker backend: each sandbox is one hardened container running the same agent as the
subprocess backend.

The backend needs nothing but the Docker API (no filesystem shared with the daemon, which may be
remote, rootless, or outside the engine's mount namespace). The agent is built into images made by
`lci image build` (labelled with its digest); any other image with `python3` gets it from a volume
that this backend fills once, through the archive API, and mounts read-only. The session's workdir
is a tmpfs volume held by a keeper container (see `host.py`).

    api.py      the Docker SDK, and the translation of its errors (the only module importing docker)
    leaks.py    closes the sockets a failed SDK call left open (docker-py leaks them)
    spec.py     the hardened container configuration, labels, isolation report
    sandbox.py  one container as a Sandbox (attach stream, interrupt, kill, exit)
    host.py     a session's workdir volume, its keeper, and container factory (SessionHost)
    files.py    the file API through the daemon; archive.py sanitises its tar streams
    core/warm_pool.py  pre-started containers, claimed by new sessions

Every container and volume is labelled with its owner (engine pid and start time), machine, backend
instance and session. The reaper removes containers, then volumes, whose owner process is gone: at
start-up and then periodically. Closing the backend removes everything it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections.abc import Coroutine, Iterator
from typing import Any

from engine.agent.protocol import PROTOCOL_VERSION
from engine.config import Settings
from engine.core.agent_files import agent_digest
from engine.core.backends.docker import cleanup
from engine.core.backends.docker.agent import AgentSource
from engine.core.backends.docker.api import DockerAPI
from engine.core.backends.docker.host import DockerHost, Keeper, Workdir
from engine.core.backends.docker.pools import PoolSet
from engine.core.backends.docker.sandbox import DockerSandbox
from engine.core.backends.docker.spec import (
    LABEL_BACKEND,
    LABEL_MACHINE,
    LABEL_OWNER,
    LABEL_PROTOCOL,
    LABEL_SESSION,
    SANDBOX_UID,
    ContainerPlan,
    container_limits,
    is_gvisor,
    volume_options,
)
from engine.core.owners import owner_tag
from engine.core.warm_pool import Slot, WarmPool
from engine.errors import BackendUnavailable, LCIError, SandboxError, SandboxStartError
from engine.models import Limits, SessionSpec

log = logging.getLogger(__name__)
READY_TIMEOUT_S = 30.0
REAP_INTERVAL_S = 60.0
# After the daemon was unreachable, what this engine could not remove meanwhile is looked for this
# often (see cleanup.remove_stragglers).
STRAGGLER_CHECK_S = 2.0
IMAGE_TTL_S = 30.0  # how long a name's image id is trusted (a rebuild moves the tag)
POOL = "pool"


def _machine_tag() -> str:
    """This boot and pid namespace: owner pids are only meaningful within them."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as handle:
            boot = handle.read().strip()[:8]
    except OSError:
        boot = "noboot"
    return f"{boot}-{os.stat('/proc/self/ns/pid').st_ino}"


class DockerBackend:
    """Sessions in containers. Construction blocks (it talks to the daemon and reaps what dead
    engines left behind); it raises BackendUnavailable when no daemon answers."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.api = DockerAPI()
        self.owner = owner_tag()
        self.machine = _machine_tag()
        self.backend_id = uuid.uuid4().hex[:8]
        self.user = (SANDBOX_UID, SANDBOX_UID)
        # Sessions with the network share one bridge of this backend's, with inter-container
        # traffic off: not docker's default bridge, where every container reaches every other.
        self.network = f"lci-net-{self.owner}-{self.backend_id}"
        self._network_made = False
        self.gvisor = False  # the runtime is gVisor (spec.GVISOR_HOST_PIDS): read just below
        self._images: dict[str, tuple[str, float]] = {}  # name -> (image id, resolved at)
        agent_volume = f"lci-agent-{agent_digest()}-{self.backend_id}"
        self.agent = AgentSource(self.api, agent_volume, self._labels("agent"), self.user)
        self.pools: PoolSet[DockerSandbox, Workdir] = PoolSet(
            settings.docker_warm_pool,
            settings.docker_max_pools,
            settings.docker_pool_idle_s,
            self._warm_slot,
            self._discard,
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self._reaper: asyncio.Task[None] | None = None
        try:
            runtime = settings.docker_runtime
            self.gvisor = runtime is not None and is_gvisor(self.api.runtime_program(runtime))
            self.reap_orphans()
        except BaseException:
            self.api.close()
            raise

    async def start(self) -> None:
        """Start the periodic reaper, and fill the default image's warm pool in the background."""
        self._start_reaper()
        with contextlib.suppress(LCIError):  # a missing image is reported when a session needs it
            self._pool(await self.check_image(self.settings.docker_image))

    # -- sessions --------------------------------------------------------------------------------
    async def open(self, session_id: str, spec: SessionSpec) -> DockerHost:
        """A host for a new session: a claimed warm container when one matches, else a fresh
        workdir whose container starts on the first spawn. Raises ImageNotFound or
        SandboxStartError for an unusable image."""
        self._start_reaper()
        # Pools and containers go by image id: six spellings of one image are one pool.
        image = await self.check_image(spec.image or self.settings.docker_image)
        if spec.limits.network:
            await self._ensure_network()
        # Only a session that could use a pooled container gets (or starts) its image's pool:
        # one with its own limits or environment would leave the pool's containers idle.
        pool = (
            self._pool(image)
            if not spec.env
            and container_limits(spec.limits) == container_limits(self.settings.limits)
            else None
        )
        if pool is not None:
            slot = pool.claim()
            if slot is not None:
                self._background(
                    asyncio.to_thread(
                        self.api.rename, slot.sandbox.container_id, f"lci-{session_id}-0"
                    )
                )
                plan = self._plan(image, spec.limits, slot.resources.volume, session_id, spec.env)
                host = DockerHost(plan, slot.resources, self.start_sandbox, warm=slot.sandbox)
                host.start_path = "docker_pool"
                return host
        plan = self._plan(image, spec.limits, _volume_name(session_id), session_id, spec.env)
        workdir = await self._new_workdir(plan)
        host = DockerHost(plan, workdir, self.start_sandbox, warm=None)
        host.start_path = "docker_cold"
        return host

    async def check_image(self, image: str) -> str:
        """The id of `image`; ImageNotFound if the daemon lacks it; SandboxStartError if it was
        built for another agent protocol. An image without the label is taken as any python3
        image, and gets the agent from this backend's agent volume, as does one built with
        another agent."""
        known = self._images.get(image)
        if known is not None and time.monotonic() - known[1] < IMAGE_TTL_S:
            return known[0]
        image_id, labels = await asyncio.to_thread(self.api.inspect_image, image)
        version = labels.get(LABEL_PROTOCOL, "")
        if version and version != str(PROTOCOL_VERSION):
            raise SandboxStartError(
                f"image {image!r} was built for agent protocol {version}, this engine speaks "
                f"{PROTOCOL_VERSION}; rebuild it with `lci image build --force`"
            )
        await self.agent.prepare(image_id, labels, self.settings.limits)
        self._images[image] = (image_id, time.monotonic())
        return image_id

    def _labels(self, session: str) -> dict[str, str]:
        return {
            LABEL_OWNER: self.owner,
            LABEL_MACHINE: self.machine,
            LABEL_BACKEND: self.backend_id,
            LABEL_SESSION: session,
        }

    def _plan(
        self,
        image: str,
        limits: Limits,
        volume: str,
        session: str,
        env: dict[str, str],
        preload: tuple[str, ...] = (),
    ) -> ContainerPlan:
        return ContainerPlan(
            image=image,
            limits=limits,
            workdir=volume,
            labels=self._labels(session),
            name_prefix=f"lci-{session}",
            env=env,
            preload=preload,
            network=self.network,
            agent_volume=self.agent.volume(image),
            runtime=self.settings.docker_runtime,
            gvisor=self.gvisor,
        )

    async def _ensure_network(self) -> None:
        if not self._network_made:
            labels = {
                LABEL_OWNER: self.owner,
                LABEL_MACHINE: self.machine,
                LABEL_BACKEND: self.backend_id,
            }
            await asyncio.to_thread(self.api.ensure_network, self.network, labels)
            self._network_made = True

    async def start_sandbox(self, plan: ContainerPlan) -> DockerSandbox:
        """Create a container from `plan` and return its sandbox once the agent said hello. A
        start the runtime refuses is tried once more with a new container: under load the daemon
        now and then fails one (`OCI runtime create failed`, a rootfs it cannot read for a
        moment), and the client should not see that as a 503."""
        try:
            return await self._start_sandbox_once(plan)
        except (BackendUnavailable, SandboxStartError):
            raise
        except SandboxError as exc:
            log.warning("a container did not start (%s); trying once more", exc.message)
            return await self._start_sandbox_once(plan)

    async def _start_sandbox_once(self, plan: ContainerPlan) -> DockerSandbox:
        container_id = await asyncio.to_thread(
            self.api.create, plan.image, plan.create_args(self.user), plan.host_args()
        )
        with _no_python3(plan.image):
            return await DockerSandbox.start(self.api, container_id, READY_TIMEOUT_S)

    async def start_keeper(self, plan: ContainerPlan) -> Keeper:
        """Create, attach to and start the keeper of `plan`'s volume. Removed again on failure."""

        def start() -> Keeper:
            args = plan.keeper_args(self.user)
            container_id = self.api.create(plan.image, args, plan.keeper_host_args())
            sock = None
            try:
                sock = self.api.attach(container_id)  # held open: the keeper lives as long
                with _no_python3(plan.image):
                    self.api.start(container_id)
            except BaseException:
                if sock is not None:
                    sock.close()
                self.api.remove(container_id)
                raise
            return Keeper(container_id, sock)

        return await asyncio.to_thread(start)

    async def _new_workdir(self, plan: ContainerPlan) -> Workdir:
        """The plan's volume, created now, and its keeper, started in the background."""
        options = volume_options(plan.limits.disk_mb, self.user)
        await asyncio.to_thread(self.api.create_volume, plan.workdir, plan.labels, options)
        workdir = Workdir(self.api, plan, self.user)
        workdir.start_keeper(self.start_keeper, plan)
        return workdir

    # -- warm pool -------------------------------------------------------------------------------
    def _pool(self, image_id: str) -> WarmPool[DockerSandbox, Workdir] | None:
        return self.pools.get(image_id, pinned=self._default_image_id())

    def _default_image_id(self) -> str | None:
        known = self._images.get(self.settings.docker_image)
        return known[0] if known is not None else None

    async def _warm_slot(self, image: str) -> Slot[DockerSandbox, Workdir]:
        limits = self.settings.limits
        if limits.network:
            await self._ensure_network()
        # A pooled container imports the preloaded modules while it waits, so the session
        # that claims it finds them imported; its restarts start plain, like any container.
        volume = _volume_name(POOL)
        plan = self._plan(image, limits, volume, POOL, {}, tuple(self.settings.preload))
        workdir = await self._new_workdir(plan)
        try:
            sandbox = await self.start_sandbox(plan)
        except BaseException:
            await asyncio.shield(workdir.remove())
            raise
        return Slot(sandbox, workdir)

    @staticmethod
    async def _discard(slot: Slot[DockerSandbox, Workdir]) -> None:
        await slot.sandbox.kill()
        await slot.resources.remove()

    async def warm_up(self, timeout: float = 120.0) -> bool:
        """Fill the default image's pool now (e.g. at server start) and wait for it; True when
        the pool is full (or disabled)."""
        pool = self._pool(await self.check_image(self.settings.docker_image))
        return True if pool is None else await pool.wait_full(timeout)

    # -- reaping and shutdown --------------------------------------------------------------------
    def reap_orphans(self) -> int:
        """Remove containers, then volumes, whose owning engine process is gone. Blocking."""
        return cleanup.reap_orphans(self.api, self.machine, self.owner, self.settings.state_dir)

    def _remove_stragglers(self) -> bool:
        return cleanup.remove_stragglers(self.api, f"{LABEL_BACKEND}={self.backend_id}")

    def _sweep(self) -> None:
        network = self.network if self._network_made else None
        cleanup.sweep(self.api, f"{LABEL_BACKEND}={self.backend_id}", network)

    def _start_reaper(self) -> None:
        if self._reaper is None:
            self._reaper = asyncio.get_running_loop().create_task(self._reap_forever())

    async def _reap_forever(self) -> None:
        loop = asyncio.get_running_loop()
        next_reap, swept = loop.time() + REAP_INTERVAL_S, self.api.outages
        while True:
            await asyncio.sleep(STRAGGLER_CHECK_S)
            if self.api.outages != swept:
                seen = self.api.outages
                with contextlib.suppress(LCIError):
                    if await asyncio.to_thread(self._remove_stragglers):
                        swept = seen
            if loop.time() < next_reap:
                continue
            next_reap = loop.time() + REAP_INTERVAL_S
            self.pools.close_idle(pinned=self._default_image_id())
            try:
                reaped = await asyncio.to_thread(self.reap_orphans)
            except LCIError as exc:
                log.warning("reaping orphaned containers failed: %s", exc)
            else:
                if reaped:
                    log.info("removed %d containers left by engines that are gone", reaped)

    def _background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Remove every container and volume this backend started (sessions are closed first
        by the manager; this also catches any a failure left behind). Never raises for an
        unreachable daemon: it logs, and the reaper of the next engine finishes the job."""
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        await asyncio.gather(self.pools.close(), *self._tasks, return_exceptions=True)
        try:
            await asyncio.to_thread(self._sweep)
        except LCIError as exc:  # the daemon is gone: the next engine's reaper removes the rest
            log.warning("could not remove this backend's containers: %s", exc)
        finally:
            self.api.close()


def _volume_name(session: str) -> str:
    # Unique even for one session id: a reused id (or the pool) gets a fresh volume each time.
    return f"lci-{session}-{uuid.uuid4().hex[:8]}"


@contextlib.contextmanager
def _no_python3(image: str) -> Iterator[None]:
    """Say what a start refused for lack of python3 means, in the image's terms."""
    try:
        yield
    except SandboxError as exc:
        if "executable file not found" not in exc.message:
            raise
        raise SandboxStartError(
            f"image {image!r} cannot run the sandbox: it has no python3 on its PATH "
            f"(the docker backend needs an image with python3; {exc.message})"
        ) from exc
