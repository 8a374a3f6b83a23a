"""The byte stream between the engine and a session's process service (`engine/agent/processes.py`).

Backends open one per session on its first command (`SessionHost.open_processes`): the subprocess
backend starts the service through its launcher, joined to the running sandbox; the docker backend
with `docker exec` in the session's container. Either way the service lives and dies with the
sandbox it serves. Events reach the receiver on the event loop thread, in order: data, then the end.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

DataReceiver = Callable[[bytes], None]
EndReceiver = Callable[[str], None]


class ProcessChannel(abc.ABC):
    def __init__(self) -> None:
        self._on_data: DataReceiver | None = None
        self._on_end: EndReceiver | None = None
        self._early: list[bytes] = []
        self._ended: str | None = None

    def attach(self, on_data: DataReceiver, on_end: EndReceiver) -> None:
        """Start delivering; what arrived before is delivered first."""
        self._on_data, self._on_end = on_data, on_end
        early, self._early = self._early, []
        for data in early:
            on_data(data)
        if self._ended is not None:
            on_end(self._ended)

    @abc.abstractmethod
    def send(self, data: bytes) -> None:
        """Queue bytes for the service; never blocks."""

    @abc.abstractmethod
    async def close(self) -> None:
        """End the channel: the service kills every command it runs and exits."""

    # -- for subclasses ------------------------------------------------------------------------
    def _received(self, data: bytes) -> None:
        if self._on_data is None:
            self._early.append(data)
        else:
            self._on_data(data)

    def _end(self, reason: str) -> None:
        if self._ended is not None:
            return
        self._ended = reason
        if self._on_end is not None:
            self._on_end(reason)
