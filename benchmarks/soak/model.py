"""The soak's model server: the scripted fake model, answering forever, with injectable faults.

Every round that has no tool result yet calls the code interpreter; a round that has one answers
with text. `inject("drop")` makes a coming round cut its stream after the first event (a crashing
model server), `inject("hang")` makes one go silent (a hung one), so the server's own timeouts and
error paths are exercised under load.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any, Literal

from tests.fake_llm import SSE, FakeLLM, HTTPError, stream, tool_messages

ModelFault = Literal["drop", "hang"]
HANG_S = 3600.0  # longer than any timeout that should end it; the server must give up first


class SoakModel(FakeLLM):
    def __init__(self) -> None:
        super().__init__()
        self._faults: deque[ModelFault] = deque()
        self._count_lock = threading.Lock()
        self.rounds = 0

    def inject(self, fault: ModelFault) -> None:
        with self._count_lock:
            self._faults.append(fault)

    def take(self, path: str, headers: dict[str, str], body: dict[str, Any]) -> SSE | HTTPError:
        # Nothing is recorded: a soak sends hundreds of thousands of rounds.
        with self._count_lock:
            self.rounds += 1
            fault = self._faults.popleft() if self._faults else None
        if tool_messages(body):
            turn = stream(text="The value is 42.")
        else:
            turn = stream(calls=["value = 6 * 7\nprint(value)\nvalue"])
        if fault == "drop":
            turn.drop_after = 1
        elif fault == "hang":
            turn.delay_s = HANG_S
        return turn
