"""Finished Responses conversations, kept for `previous_response_id`."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any


@dataclass
class Stored:
    """A finished Responses conversation: every message so far, and its container (session)."""

    messages: list[dict[str, Any]]
    container: str | None
    owner: str = ""  # the principal that made it; for any other it does not exist


class ResponseStore:
    """The last `capacity` responses, for `previous_response_id`."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, Stored] = OrderedDict()

    def put(self, response_id: str, stored: Stored) -> None:
        if self.capacity <= 0:
            return
        self._items[response_id] = stored
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def get(self, response_id: str) -> Stored | None:
        return self._items.get(response_id)
