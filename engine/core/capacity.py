"""Caps that protect the host from its clients: live sessions, a memory budget across sessions,
sessions per owner (an API key), and executions running at once.

Every cap refuses with `CapacityExceeded` carrying a `retry_after_s` hint (the server turns it into
429 with `Retry-After`), never by letting the host run out of memory or CPU. A session is charged
its memory limit plus its workdir (a tmpfs lives in RAM) from the moment its creation is admitted
until it is closed, so the sum of what live sessions may use stays within the budget.

Refusals name the caller's own figures and the caps' names, never what live sessions hold
together: on a server with several API keys that would tell one key how much the others use.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import psutil

from engine import observe
from engine.errors import CapacityExceeded
from engine.models import Limits

# How long a refused client is told to wait: sessions end on idle expiry or when closed, executions
# within their timeout, so a few seconds is the honest order of magnitude.
SESSION_RETRY_AFTER_S = 5.0
EXECUTION_RETRY_AFTER_S = 2.0


def default_memory_budget_mb() -> int:
    """80% of the host's RAM: the rest is for the engine, the kernel and whatever else runs."""
    return int(psutil.virtual_memory().total * 0.8) >> 20


def charge_mb(limits: Limits) -> int:
    return limits.memory_mb + limits.disk_mb


@dataclass
class CapacitySettings:
    max_sessions: int
    memory_budget_mb: int
    max_sessions_per_owner: int | None
    max_executions: int
    execution_wait_s: float


class Capacity:
    def __init__(self, settings: CapacitySettings) -> None:
        self.settings = settings
        self._charged_mb = 0
        self._sessions = 0
        self._owners: Counter[str] = Counter()
        self._executions = asyncio.Semaphore(settings.max_executions)
        self._running = 0

    @property
    def sessions(self) -> int:
        return self._sessions

    @property
    def charged_mb(self) -> int:
        return self._charged_mb

    @property
    def running(self) -> int:
        return self._running

    def owned_by(self, owner: str) -> int:
        return self._owners[owner]

    def owners(self) -> dict[str, int]:
        """Live sessions per owner (a copy)."""
        return dict(self._owners)

    @contextlib.contextmanager
    def admit(self, limits: Limits, owner: str | None) -> Iterator[Admission]:
        """Admit one session with `limits` for `owner`, or raise CapacityExceeded. The admission
        holds its share until `release()`; leaving the block by an exception releases it."""
        self._check(limits, owner)
        admission = Admission(self, charge_mb(limits), owner)
        self._sessions += 1
        self._charged_mb += admission.mb
        if owner is not None:
            self._owners[owner] += 1
        try:
            yield admission
        except BaseException:
            admission.release()
            raise

    def _check(self, limits: Limits, owner: str | None) -> None:
        s = self.settings
        if self._sessions >= s.max_sessions:
            observe.get().capacity_refused("sessions")
            raise CapacityExceeded(
                "as many sessions are live as max_sessions allows; close one or try again later",
                SESSION_RETRY_AFTER_S,
            )
        quota = s.max_sessions_per_owner
        if owner is not None and quota is not None and self._owners[owner] >= quota:
            observe.get().capacity_refused("owner_quota")
            raise CapacityExceeded(
                f"this key holds {quota} sessions, its quota; close one", SESSION_RETRY_AFTER_S
            )
        charge = charge_mb(limits)
        if self._charged_mb + charge > s.memory_budget_mb:
            observe.get().capacity_refused("memory_budget")
            raise CapacityExceeded(
                f"the memory budget of live sessions has no room for this one's {charge} MB "
                "(memory_mb + disk_mb); close one, ask for less, or try again later",
                SESSION_RETRY_AFTER_S,
            )

    def _release(self, admission: Admission) -> None:
        self._sessions -= 1
        self._charged_mb -= admission.mb
        if admission.owner is not None:
            self._owners[admission.owner] -= 1
            if self._owners[admission.owner] <= 0:
                del self._owners[admission.owner]

    @contextlib.asynccontextmanager
    async def execution(self) -> AsyncIterator[None]:
        """Hold one of the execution slots while a cell runs; wait up to `execution_wait_s` for
        one, then refuse."""
        started = time.perf_counter()
        try:
            if self._executions.locked():
                await asyncio.wait_for(self._executions.acquire(), self.settings.execution_wait_s)
            else:  # a free slot is taken at once: no task, no timer, no turn of the event loop
                await self._executions.acquire()
        except TimeoutError:
            observe.get().capacity_refused("executions")
            raise CapacityExceeded(
                f"{self.settings.max_executions} executions are running; try again shortly",
                EXECUTION_RETRY_AFTER_S,
            ) from None
        observe.get().execution_slot_waited(time.perf_counter() - started)
        self._running += 1
        try:
            yield
        finally:
            self._running -= 1
            self._executions.release()


class Admission:
    """One admitted session's share of the caps."""

    def __init__(self, capacity: Capacity, mb: int, owner: str | None) -> None:
        self._capacity = capacity
        self.mb = mb
        self.owner = owner
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._capacity._release(self)
