"""The docker backend's warm pools, one per image *id* (however a session spells the image's name),
bounded: each holds `docker_warm_pool` containers, and at most `docker_max_pools` pools exist. The
default image's pool is kept; another image's pool is closed when it has gone unclaimed for
`docker_pool_idle_s`, or, least recently used first, when a new image needs room."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Generic, TypeVar

from engine.core.sandbox import Sandbox
from engine.core.warm_pool import Slot, WarmPool

S = TypeVar("S", bound=Sandbox)
W = TypeVar("W")


class PoolSet(Generic[S, W]):
    def __init__(
        self,
        size: int,
        max_pools: int,
        idle_s: float,
        start: Callable[[str], Awaitable[Slot[S, W]]],
        discard: Callable[[Slot[S, W]], Coroutine[Any, Any, None]],
    ) -> None:
        self.size = size
        self.max_pools = max_pools
        self.idle_s = idle_s
        self._start = start
        self._discard = discard
        self._pools: OrderedDict[str, WarmPool[S, W]] = OrderedDict()  # least recent first
        self._used: dict[str, float] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._pools)

    def get(self, image_id: str, pinned: str | None = None) -> WarmPool[S, W] | None:
        """The pool of `image_id`, made (and filling) if needed; None when pools are off. Making
        one may close the least recently used other pool, never the `pinned` image's."""
        if self.size <= 0 or self.max_pools <= 0:
            return None
        pool = self._pools.get(image_id)
        if pool is None:
            pool = WarmPool(self.size, lambda: self._start(image_id), self._discard, "docker")
            self._pools[image_id] = pool
            pool.fill()
            for victim in list(self._pools):
                if len(self._pools) <= self.max_pools:
                    break
                if victim not in (image_id, pinned):
                    self._close(victim)
        self._pools.move_to_end(image_id)
        self._used[image_id] = time.monotonic()
        return pool

    def close_idle(self, pinned: str | None) -> int:
        """Close the pools of images no session claimed from for `idle_s`; how many."""
        cutoff = time.monotonic() - self.idle_s
        stale = [k for k in self._pools if k != pinned and self._used.get(k, 0.0) < cutoff]
        for image_id in stale:
            self._close(image_id)
        return len(stale)

    def _close(self, image_id: str) -> None:
        pool = self._pools.pop(image_id)
        self._used.pop(image_id, None)
        task = asyncio.get_running_loop().create_task(pool.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        pools, self._pools = list(self._pools.values()), OrderedDict()
        await asyncio.gather(
            *(pool.close() for pool in pools), *self._closing, return_exceptions=True
        )
