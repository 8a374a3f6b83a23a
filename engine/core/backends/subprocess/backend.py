"""The subprocess backend: each sandbox is a process tree built by `standalone/launcher.py`.

As root it gets pid, mount, network, ipc and uts namespaces, a private read-only root filesystem, a
dedicated uid, cgroup memory/pids/CPU limits, a tmpfs workdir with an exact size, and rlimits. Without
root it uses unprivileged user namespaces where the kernel allows them, and otherwise falls back to
rlimits in its own process group; what a session lacks is listed in `SessionInfo.isolation`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from itertools import count

from engine.config import Settings
from engine.core.agent_files import stage_agent
from engine.core.backends.subprocess.forkserver import ForkServer, ForkServerError
from engine.core.backends.subprocess.host import SubprocessHost, passthrough_env
from engine.core.backends.subprocess.probe import MachineProbe
from engine.core.backends.subprocess.uids import lease_uid
from engine.core.output import relay_env
from engine.core.sandbox import Sandbox
from engine.core.warm_pool import Slot, WarmPool
from engine.errors import SandboxStartError
from engine.models import Limits, SessionSpec

log = logging.getLogger(__name__)
# A zygote that died is started again, at most this often: a crash loop must not eat the host.
FORKSERVER_RETRY_S = 10.0


class SubprocessBackend:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.probe = MachineProbe.detect(settings, stage_agent(settings.state_dir))
        # Where uid leases start: a different place for each engine run, so a restarted engine
        # does not hand out the previous run's uids first.
        self._uids = count(int.from_bytes(os.urandom(3), "big"))
        self.forkserver: ForkServer | None = None
        self._forkserver_start: asyncio.Task[None] | None = None
        self._next_revival = 0.0
        self._pool_spec = SessionSpec(limits=settings.limits)
        self.pool: WarmPool[Sandbox, SubprocessHost] | None = None
        if settings.subprocess_warm_pool > 0:
            self.pool = WarmPool(
                settings.subprocess_warm_pool, self._warm_slot, self._discard, "subprocess"
            )
        if settings.forkserver:
            env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/nonexistent"}
            if self.probe.seed_dir is not None:
                env["MPLCONFIGDIR"] = str(self.probe.seed_dir / "matplotlib")
            env |= passthrough_env()
            self.forkserver = ForkServer(
                settings.sandbox_python,
                self.probe.agent_root,
                settings.preload,
                self.probe.owner_dir / "zygote.log",
                env,
            )

    async def start(self) -> None:
        """Warm the fork server, then the pool, in the background: until they are ready, sessions
        start cold."""
        if self._forkserver_start is None:
            self._forkserver_start = asyncio.get_running_loop().create_task(self._warm())

    async def _warm(self) -> None:
        if self.forkserver is not None:
            try:
                info = await self.forkserver.start()
                log.info("fork server ready: %s", info)
            except (ForkServerError, OSError, TimeoutError) as exc:
                log.warning("fork server unavailable, sessions start cold: %s", exc)
        if self.pool is not None:
            self.pool.fill()

    def _revive_forkserver(self) -> None:
        """Start a fork server that died (killed, crashed) again, in the background and at most
        once per FORKSERVER_RETRY_S; until it is back, sessions start cold."""
        started = self._forkserver_start
        if (
            self.forkserver is None
            or self.forkserver.ready
            or started is None
            or not started.done()
        ):
            return
        now = time.monotonic()
        if now < self._next_revival:
            return
        self._next_revival = now + FORKSERVER_RETRY_S
        self._forkserver_start = asyncio.get_running_loop().create_task(self._restart())

    async def _restart(self) -> None:
        assert self.forkserver is not None
        await self.forkserver.close()  # reap what is left of the old one
        try:
            await self.forkserver.start()
            log.warning("fork server restarted")
        except (ForkServerError, OSError, TimeoutError) as exc:
            log.warning("fork server could not be restarted, sessions start cold: %s", exc)

    async def warm_up(self, timeout: float = 120) -> bool:
        """Wait until the fork server runs (if enabled) and the pool is full; True when both are."""
        ready = await self.wait_forkserver(timeout) if self.forkserver is not None else True
        if self.pool is not None:
            ready = await self.pool.wait_full(timeout) and ready
        return ready

    async def _warm_slot(self) -> Slot[Sandbox, SubprocessHost]:
        self._revive_forkserver()
        host = await self._new_host(f"pool-{uuid.uuid4().hex[:10]}", self._pool_spec, staged=True)
        try:
            sandbox = await host.stage()
        except BaseException:
            await asyncio.shield(host.release())
            raise
        return Slot(sandbox, host)

    def _fits_pool(self, limits: Limits) -> bool:
        """Whether a staged sandbox can become a session with `limits`: everything can change at
        claim time but the network namespace, membership of the cpu cgroup and whether the agent
        has a relay."""
        pooled = self._pool_spec.limits
        return (
            limits.network == pooled.network
            and (limits.cpus is None or pooled.cpus is not None)
            # A staged fork-server sandbox started its relay, or went without, for the pool's
            # memory limit already.
            and relay_env(limits.memory_mb) == relay_env(pooled.memory_mb)
        )

    @staticmethod
    async def _discard(slot: Slot[Sandbox, SubprocessHost]) -> None:
        await slot.sandbox.kill()
        await slot.resources.release()

    async def wait_forkserver(self, timeout: float = 120) -> bool:
        """Wait for the fork server; True when sessions now come from it."""
        if self._forkserver_start is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._forkserver_start), timeout)
        return self.forkserver is not None and self.forkserver.ready

    async def open(self, session_id: str, spec: SessionSpec) -> SubprocessHost:
        """A host for a new session: a staged one from the pool, specialized to `spec`, when the
        pool has one that fits; else a new one."""
        self._revive_forkserver()
        if self.pool is not None and self._fits_pool(spec.limits):
            slot = self.pool.claim(refill=False)
            if slot is not None:
                try:
                    await slot.resources.specialize(spec)
                except BaseException as exc:
                    await asyncio.shield(self._discard(slot))
                    if not isinstance(exc, SandboxStartError):
                        raise
                    log.warning(
                        "a staged sandbox could not be specialized (%s); starting anew", exc
                    )
                else:
                    slot.resources.start_path = "pool"
                    return slot.resources
                finally:
                    self.pool.fill()
        host = await self._new_host(session_id, spec)
        forked = self.forkserver is not None and self.forkserver.ready
        host.start_path = "forkserver" if forked else "cold"
        return host

    async def _new_host(
        self, session_id: str, spec: SessionSpec, staged: bool = False
    ) -> SubprocessHost:
        if spec.limits.network and self.probe.namespaces and self.probe.slirp4netns is None:
            # Without it the sandbox would have to share the host's network namespace: its
            # loopback services (lci serve itself), its ports, every other host address.
            raise SandboxStartError(
                "network=True on the subprocess backend needs slirp4netns (Debian/Ubuntu: "
                "apt-get install slirp4netns) and, when not root, read-write access to "
                "/dev/net/tun: it gives the sandbox a network of its own"
            )
        lease = None
        if self.probe.is_root:
            try:
                lease = lease_uid(self.settings.sandbox_uid_base, next(self._uids))
            except OSError as exc:
                raise SandboxStartError(f"could not allocate a sandbox uid: {exc}") from exc
        host = SubprocessHost(
            self.probe, self.settings, session_id, spec, lease, self.forkserver, staged
        )
        try:
            await asyncio.to_thread(host.prepare)
        except OSError as exc:
            await host.release()
            raise SandboxStartError(f"could not prepare the session's sandbox: {exc}") from exc
        if self.settings.require_isolation and host.isolation.notes:
            await host.release()
            raise SandboxStartError(
                "required isolation is missing: " + "; ".join(host.isolation.notes)
            )
        return host

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()
        if self._forkserver_start is not None:
            self._forkserver_start.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._forkserver_start
        if self.forkserver is not None:
            await self.forkserver.close()
        await asyncio.to_thread(self.probe.remove_owner_dir)

    def reap_orphans(self) -> int:
        return self.probe.reap_orphans()
