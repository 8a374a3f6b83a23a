"""`ClusterSessionManager`: the `SessionManager` of a replica serving sessions of a Ray cluster.

    manager = ClusterSessionManager(Settings(ray_address="10.0.0.5:6379"))
    session = await manager.create()          # an actor on some lci node, named by the session id
    manager.get(session.id)                   # on any replica: found by name in namespace `lci`

Placement is Ray's: every session is a detached actor asking for one unit of the custom resource
`lci` (each lci node advertises as many as it takes sessions: its per-node cap) and its memory
limit plus workdir of Ray's `memory` resource (the node's memory budget), spread over the nodes.
When no node has room the session is refused with CapacityExceeded (429, Retry-After).

A replica keeps no state of its own: `_known` only caches actor handles, and anything about a
session (owner, spec, node) is asked of its actor. Sessions outlive the replica that made them;
their actors end themselves after the idle timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import signal
import threading
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayError

from engine.cluster.actor import SessionActor
from engine.cluster.ray_session import RaySession, fetch, unreachable, unwrap
from engine.config import Settings
from engine.core.capacity import SESSION_RETRY_AFTER_S, charge_mb
from engine.core.manager import SessionManager, new_session_id
from engine.core.session import Session
from engine.errors import (
    BackendUnavailable,
    BadParameter,
    CapacityExceeded,
    SandboxStartError,
    SessionNotFound,
)
from engine.models import SessionSpec, SessionState

log = logging.getLogger(__name__)

RESOURCE = "lci"  # the custom resource lci nodes advertise: how many sessions each takes
_SESSION_ID = re.compile(r"[0-9a-f]{16}")
# Settings a node does not receive: the replica's secrets, and its own paths (a node has its own
# state directory and interpreter, from its environment).
_PRIVATE = {"api_key", "api_key_file", "llm_api_key", "state_dir", "sandbox_python"}
_ACTOR: Any = ray.remote(SessionActor)


def connect(settings: Settings) -> None:
    """Join the cluster as a driver (once per process). The token, when the cluster uses token
    auth, comes from RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH, as for any Ray client."""
    if ray.is_initialized():
        return
    # Ray makes SIGTERM exit the process at once; the server's own graceful shutdown stays.
    previous = signal.getsignal(signal.SIGTERM)
    try:
        ray.init(
            address=settings.ray_address,
            namespace=settings.ray_namespace,
            logging_level=logging.WARNING,
            log_to_driver=False,
        )
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous)


class ClusterSessionManager(SessionManager):
    def __init__(self, settings: Settings | None = None) -> None:
        super().__init__(settings)
        if not self.settings.ray_address:
            raise BadParameter("a cluster session manager needs ray_address", "ray_address")
        connect(self.settings)
        self._known: dict[str, RaySession] = {}
        self._node_settings = self.settings.model_dump(mode="json", exclude=_PRIVATE)

    async def create(
        self, spec: SessionSpec | None = None, owner: str | None = None, session_id: str = ""
    ) -> RaySession:
        spec = spec or SessionSpec(backend=self.settings.backend, limits=self.settings.limits)
        self.settings.max_limits.check(spec.limits)
        if spec.limits.network and not self.settings.ray_allow_network:
            raise BadParameter(
                "limits.network is not available on this cluster: a sandbox with the network "
                "could reach Ray's ports, and whoever reaches them runs code on every node "
                "(an operator who blocks those ports from sandboxes may set LCI_RAY_ALLOW_NETWORK)",
                "limits.network",
            )
        await asyncio.to_thread(self._check_room)
        self._check_quota(owner)
        session_id = session_id or new_session_id()
        handle = _ACTOR.options(
            name=session_id,
            namespace=self.settings.ray_namespace,
            lifetime="detached",
            num_cpus=0,
            resources={RESOURCE: 1},
            memory=charge_mb(spec.limits) << 20,
            scheduling_strategy="SPREAD",
            max_restarts=0,
            max_concurrency=64,
        ).remote(self._node_settings, spec.model_dump(mode="json"), owner, session_id)
        try:
            reply = await asyncio.wait_for(
                handle.start.remote(), self.settings.ray_placement_timeout_s
            )
            unwrap(reply)
        except TimeoutError:
            ray.kill(handle, no_restart=True)
            raise CapacityExceeded(
                f"no node of the cluster took the session within "
                f"{self.settings.ray_placement_timeout_s:g} s",
                SESSION_RETRY_AFTER_S,
            ) from None
        except RayActorError as exc:  # its process failed to start on the node
            raise SandboxStartError(f"the session's actor did not start: {exc}") from exc
        except BaseException:
            ray.kill(handle, no_restart=True)
            raise
        session = RaySession(handle, reply["info"], self._timeout, self._forget)
        self._known[session_id] = session
        return session

    @property
    def _timeout(self) -> float:
        return self.settings.ray_call_timeout_s

    def _check_room(self) -> None:
        """Refuse at once when no node offers lci or none has a free slot (Ray would otherwise
        keep the actor pending until the placement timeout)."""
        if ray.cluster_resources().get(RESOURCE, 0) < 1:
            raise BackendUnavailable(
                f"no node of the Ray cluster offers the `{RESOURCE}` resource: start lci nodes "
                f"with `ray start --resources '{{\"{RESOURCE}\": N}}'`"
            )
        if ray.available_resources().get(RESOURCE, 0) < 1:
            raise CapacityExceeded(
                "every node of the cluster holds as many sessions as it takes",
                SESSION_RETRY_AFTER_S,
            )

    def _check_quota(self, owner: str | None) -> None:
        """An owner's quota counts its sessions on the whole cluster (their actors know them)."""
        cap = self.settings.max_sessions_per_owner
        if cap is None or owner is None:
            return
        if sum(1 for s in self.list() if s.owner == owner) >= cap:
            raise CapacityExceeded(
                f"this API key holds {cap} live sessions, its quota; close one first",
                SESSION_RETRY_AFTER_S,
            )

    def _forget(self, session_id: str) -> None:
        self._known.pop(session_id, None)

    def get(self, session_id: str) -> RaySession:
        """The session, from this replica's cache or by its actor's name (one lookup and one call
        to the actor, blocking, the first time this replica sees it)."""
        known = self._known.get(session_id)
        if known is not None:
            return known
        if not _SESSION_ID.fullmatch(session_id):
            raise SessionNotFound(f"no session {session_id!r}")
        try:
            handle = ray.get_actor(session_id, namespace=self.settings.ray_namespace)
        except ValueError:
            raise SessionNotFound(f"no session {session_id!r}") from None
        try:
            reply = fetch(handle.info.remote(), self._timeout)
        except (RayActorError, GetTimeoutError) as exc:
            raise unreachable(handle, session_id, exc) from exc
        session = self._adopt(handle, reply)
        if session is None:
            raise SessionNotFound(f"no session {session_id!r}")
        return session

    def _adopt(self, handle: Any, reply: dict[str, Any]) -> RaySession | None:
        """The session an actor's reply describes, known from now on (None: not started yet,
        closed meanwhile, or already known to be lost)."""
        if "error" in reply:
            return None
        info = reply["info"]["info"]
        if info["state"] == SessionState.CLOSED:  # deleted through a replica that kills it next
            self._forget(info["id"])
            return None
        known = self._known.get(info["id"])
        if known is not None:
            if known.lost is not None:
                return None
            known.apply(reply["info"])
            return known
        session = RaySession(handle, reply["info"], self._timeout, self._forget)
        self._known[session.id] = session
        return session

    def list(self) -> list[Session]:
        """Every live session of the cluster (whoever made it): the named actors of the
        namespace, asked for their state in one round."""
        names = [n for n in ray.util.list_named_actors() if _SESSION_ID.fullmatch(n)]
        handles: dict[str, Any] = {}
        for name in names:
            known = self._known.get(name)
            with contextlib.suppress(ValueError):
                handles[name] = (
                    known.handle if known else ray.get_actor(name, self.settings.ray_namespace)
                )
        refs: dict[str, Any] = {name: handle.info.remote() for name, handle in handles.items()}
        ready, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=self._timeout)
        done = set(ready)
        sessions: list[Session] = []
        for name, ref in refs.items():
            if ref not in done:
                continue
            with contextlib.suppress(RayError):  # died meanwhile: not live
                reply = fetch(ref, 0)
                session = self._adopt(handles[name], reply)
                if session is not None:
                    sessions.append(session)
        # Lost ones this replica knows answer 410 until deleted, and are listed until then.
        sessions += [s for s in self._known.values() if s.lost is not None]
        return sessions

    def count(self) -> int:
        """Named session actors: one question to Ray's control store, none to the actors (a
        load balancer's health checks must stay cheap)."""
        return sum(1 for n in ray.util.list_named_actors() if _SESSION_ID.fullmatch(n))

    async def close(self, session_id: str, reason: str = "closed") -> None:
        session = self.get(session_id)
        try:
            await session.close()
        finally:
            self._forget(session_id)

    async def close_all(self) -> None:
        """A replica going away leaves the cluster's sessions to the other replicas."""
        self._known.clear()

    async def expire_idle(self) -> int:
        return 0  # each session's actor expires its own session
