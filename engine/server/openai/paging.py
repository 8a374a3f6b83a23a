"""OpenAI's cursor pagination: `after` (the id the previous page ended with), `limit`, `order` by
creation time, answered as `{"object": "list", "data", "first_id", "last_id", "has_more"}`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeVar

from engine.errors import BadParameter

T = TypeVar("T")
Order = Literal["asc", "desc"]


def page(
    items: Sequence[T],
    *,
    id_of: Callable[[T], str],
    wire: Callable[[T], dict[str, Any]],
    after: str | None,
    limit: int,
    order: Order,
) -> dict[str, Any]:
    """One page of `items` (given oldest first)."""
    ordered = list(items) if order == "asc" else list(reversed(items))
    start = 0
    if after is not None:
        ids = [id_of(item) for item in ordered]
        if after not in ids:
            raise BadParameter(f"no object {after!r} in this list to continue after", "after")
        start = ids.index(after) + 1
    chosen = ordered[start : start + limit]
    data = [wire(item) for item in chosen]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": start + limit < len(ordered),
    }
