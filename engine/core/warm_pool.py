"""A warm pool: sandboxes started ahead of time, so creating a session is a claim, not a start.

Backends keep one per kind of sandbox they can pre-start (the docker backend one per image, the
subprocess backend one). The docker backend's containers carry the engine's default limits, and a
session that asks for anything else starts a fresh one instead; the subprocess backend's sandboxes
are staged (built, but waiting for a session's limits) and serve sessions with any limits. Claiming
is synchronous; the pool refills itself in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from engine import observe
from engine.core.sandbox import Sandbox

log = logging.getLogger(__name__)
S = TypeVar("S", bound=Sandbox)
W = TypeVar("W")
_MAX_BACKOFF_S = 30.0


@dataclass
class Slot(Generic[S, W]):
    """A started sandbox and the resources it runs on: the subprocess backend's session host, the
    docker backend's workdir."""

    sandbox: S
    resources: W


class WarmPool(Generic[S, W]):
    def __init__(
        self,
        size: int,
        start: Callable[[], Awaitable[Slot[S, W]]],
        discard: Callable[[Slot[S, W]], Coroutine[Any, Any, None]],
        label: str = "",
    ) -> None:
        """`start` makes one slot; `discard` frees one the pool no longer wants; `label` names
        the pool's backend to observers."""
        self.size = size
        self.label = label
        self._start = start
        self._discard = discard
        self._ready: deque[Slot[S, W]] = deque()
        self._filler: asyncio.Task[None] | None = None
        self._discards: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def ready(self) -> int:
        return len(self._ready)

    def claim(self, refill: bool = True) -> Slot[S, W] | None:
        """A live warm slot, now owned by the caller, or None when the pool is empty. With
        `refill=False` the caller calls `fill()` itself once it is done with the slot: starting the
        next sandbox competes for the CPU with whatever the caller still does to this one."""
        observer = observe.get()
        while self._ready:
            slot = self._ready.popleft()
            observer.pool_depth_changed(self.label, -1)
            if slot.sandbox.alive:
                if refill:
                    self.fill()
                observer.pool_claimed(self.label, True)
                return slot
            self._discard_later(slot)  # died while waiting (daemon restart, OOM at start-up)
        self.fill()
        observer.pool_claimed(self.label, False)
        return None

    def fill(self) -> None:
        """Start refilling in the background, unless that is already under way."""
        if self._closed or self.size <= 0:
            return
        if self._filler is None or self._filler.done():
            self._filler = asyncio.get_running_loop().create_task(self._refill())

    async def wait_full(self, timeout: float) -> bool:
        """Wait until the pool holds `size` slots; False if that did not happen in time."""
        self.fill()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self._ready) < self.size and loop.time() < deadline:
            await asyncio.sleep(0.02)
        return len(self._ready) >= self.size

    async def _refill(self) -> None:
        failures = 0
        while not self._closed and len(self._ready) < self.size:
            try:
                slot = await self._start()
            except Exception as exc:  # keep the engine serving; cold starts will report it
                observe.get().pool_refilled(self.label, False)
                failures += 1
                delay = min(_MAX_BACKOFF_S, 0.5 * 2**failures)
                log.warning(
                    "warm pool: starting a sandbox failed (%s); retrying in %.0f s", exc, delay
                )
                await asyncio.sleep(delay)
                continue
            failures = 0
            if self._closed:
                await self._discard(slot)
                return
            self._ready.append(slot)
            observe.get().pool_refilled(self.label, True)
            observe.get().pool_depth_changed(self.label, 1)

    def _discard_later(self, slot: Slot[S, W]) -> None:
        task = asyncio.get_running_loop().create_task(self._discard(slot))
        self._discards.add(task)
        task.add_done_callback(self._discards.discard)

    async def close(self) -> None:
        """Stop refilling and free every slot the pool still holds."""
        self._closed = True
        if self._filler is not None:
            self._filler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._filler
        slots, self._ready = list(self._ready), deque()
        if slots:
            observe.get().pool_depth_changed(self.label, -len(slots))
        await asyncio.gather(
            *(self._discard(s) for s in slots), *self._discards, return_exceptions=True
        )
