"""The execution in flight: where a sandbox's events for one cell go, and the wait for its end."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from engine.callbacks import ItemCallback
from engine.core.output import OutputBuffer
from engine.models import Limits


class RunningCell:
    """The execution in flight: where the sandbox's events for it go. `frame` is the agent's done
    frame once it arrived; `ended` is set when that happens or the sandbox stops."""

    def __init__(self, exec_id: str, limits: Limits, on_output: ItemCallback | None) -> None:
        self.id = exec_id
        self.limits = limits
        self.started = time.monotonic()
        self.output = OutputBuffer(limits.output_bytes, on_output)
        self.frame: dict[str, Any] | None = None
        self.ended = False
        self.poked = False  # interrupt() or restart() asked it to stop
        self.killed = False  # restart() killed its sandbox
        self._waiter: asyncio.Future[None] | None = None

    def end(self, frame: dict[str, Any] | None) -> None:
        if self.ended:
            return
        self.ended, self.frame = True, frame
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def poke(self) -> None:
        """Wake the ladder early: the caller interrupted the cell."""
        self.poked = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` for the end; True when the done frame arrived."""
        if not self.ended:
            loop = asyncio.get_running_loop()
            # A plain future and a timer: cheaper than asyncio.timeout plus shield on the hot path.
            waiter = self._waiter = loop.create_future()
            timer = loop.call_later(timeout, _resolve, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None
        return self.frame is not None


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
