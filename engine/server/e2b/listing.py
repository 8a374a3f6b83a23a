"""Listing sandboxes as E2B's `GET /v2/sandboxes` does: filtered, ordered by start time, in pages.

    metadata      `k=v&k2=v2` (each key and value URL-encoded): every pair must match
    state         `running`, `paused` or both, comma-separated (lci's sandboxes always run)
    template      the template ID the sandbox was created with
    startedAfter  an ISO 8601 time: sandboxes started at or after it (no offset: UTC)
    order         `desc` (newest first, the default) or `asc`
    limit         1..100 (default 100) per page
    nextToken     where the page starts: the `X-Next-Token` header of the previous page

A page that is not the last carries `X-Next-Token` (the SDK reads it, and stops paging when it is
absent); `X-Total-Running` counts the matching running sandboxes before paging, as E2B sends it
when running ones were asked for. The token is a cursor (the start time and id of the page's last
sandbox), not an offset: a sandbox killed between two pages does not shift the next page. The
filters are not inside it: the client sends them again with it, as E2B's SDKs do.

A parameter lci does not know is refused (400), never ignored: a filter silently dropped would
list sandboxes the client asked to leave out.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import parse_qsl, unquote

from engine.errors import BadParameter
from engine.server.e2b.registry import E2BSandbox

MAX_LIMIT = 100
STATES = frozenset({"running", "paused"})
ORDERS = frozenset({"asc", "desc"})
PARAMETERS = frozenset(
    {"metadata", "state", "template", "startedAfter", "order", "limit", "nextToken"}
)
NEXT_TOKEN_HEADER = "X-Next-Token"
TOTAL_RUNNING_HEADER = "X-Total-Running"

_Key = tuple[int, str]  # (start time in microseconds, sandbox id): the listing's sort key


@dataclass(frozen=True)
class Query:
    metadata: dict[str, str]
    states: frozenset[str]
    template: str | None
    started_after: datetime | None
    descending: bool
    limit: int | None  # None: every sandbox on one page
    after: _Key | None  # the cursor: the last sandbox of the previous page


@dataclass(frozen=True)
class Page:
    sandboxes: list[E2BSandbox]
    next_token: str | None
    total_running: int | None  # None when running sandboxes were not asked for


def parse(params: Iterable[tuple[str, str]], default_limit: int | None) -> Query:
    """The query of a list request; BadParameter (400) names the first parameter that is unknown,
    repeated or malformed."""
    given: dict[str, str] = {}
    for name, value in params:
        if name not in PARAMETERS:
            known = ", ".join(sorted(PARAMETERS))
            raise BadParameter(f"unknown list parameter {name!r} (lci takes {known})", name)
        # `state` may come as state=running&state=paused as well as comma-separated
        given[name] = f"{given[name]},{value}" if name in given and name == "state" else value
    states = frozenset(s.strip() for s in given.get("state", "running,paused").split(","))
    if not states or not states <= STATES:
        raise BadParameter(f"state must be running and/or paused, not {given['state']!r}", "state")
    order = given.get("order", "desc")
    if order not in ORDERS:
        raise BadParameter(f"order must be asc or desc, not {order!r}", "order")
    return Query(
        metadata={unquote(k): unquote(v) for k, v in parse_qsl(given.get("metadata", ""))},
        states=states,
        template=given.get("template") or None,
        started_after=_time(given["startedAfter"]) if "startedAfter" in given else None,
        descending=order == "desc",
        limit=_limit(given["limit"]) if "limit" in given else default_limit,
        after=_cursor(given["nextToken"]) if given.get("nextToken") else None,
    )


def page(found: Iterable[E2BSandbox], query: Query) -> Page:
    """The page of `found` (every live sandbox of the caller) that `query` asks for."""
    running = "running" in query.states
    matching = [s for s in found if running and _matches(s, query)]
    matching.sort(key=_key, reverse=query.descending)
    if query.after is not None:
        cursor = query.after
        start = [
            s for s in matching if (_key(s) < cursor if query.descending else _key(s) > cursor)
        ]
    else:
        start = matching
    shown = start if query.limit is None else start[: query.limit]
    more = len(shown) < len(start)
    return Page(
        sandboxes=shown,
        next_token=_token(_key(shown[-1])) if more and shown else None,
        total_running=len(matching) if running else None,
    )


def started(sandbox: E2BSandbox) -> datetime:
    """When the sandbox started, to the microsecond, as listed (`startedAt`) and as filtered."""
    return datetime.fromtimestamp(sandbox.started_at, UTC)


def _matches(sandbox: E2BSandbox, query: Query) -> bool:
    if any(sandbox.metadata.get(k) != v for k, v in query.metadata.items()):
        return False
    if query.template is not None and sandbox.template != query.template:
        return False
    return query.started_after is None or started(sandbox) >= query.started_after


def _key(sandbox: E2BSandbox) -> _Key:
    moment = started(sandbox)
    return int(moment.timestamp()) * 1_000_000 + moment.microsecond, sandbox.id


def _token(key: _Key) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode().rstrip("=")


def _cursor(token: str) -> _Key:
    try:
        micros, sandbox_id = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if isinstance(micros, int) and isinstance(sandbox_id, str):
            return micros, sandbox_id
    except (ValueError, TypeError, binascii.Error):
        pass
    raise BadParameter("nextToken is not a token lci gave (X-Next-Token)", "nextToken")


def _time(text: str) -> datetime:
    # A `+` of an offset sent unencoded arrives as a space.
    try:
        moment = datetime.fromisoformat(text.strip().replace(" ", "+"))
    except ValueError:
        raise BadParameter(
            f"startedAfter must be an ISO 8601 time, not {text!r}", "startedAfter"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _limit(text: str) -> int:
    try:
        limit = int(text)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        raise BadParameter(f"limit must be an integer from 1 to {MAX_LIMIT}, not {text!r}", "limit")
    return limit
