"""Listing E2B sandboxes: every filter applied, pages with a next token, unknown filters refused."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

import httpx
import pytest
from e2b import Sandbox, SandboxQuery, SandboxState

from tests.server.conftest import API_KEY
from tests.server.helpers import LciServer

KEY = {"X-API-Key": API_KEY}
Make = Callable[..., str]


@pytest.fixture
def tag() -> str:
    """Metadata only this test's sandboxes carry (the server is shared with other tests)."""
    return uuid.uuid4().hex


@pytest.fixture
def make(server: LciServer, tag: str) -> Iterator[Make]:
    made: list[str] = []

    def create(template: str = "base", **metadata: str) -> str:
        body = {"templateID": template, "timeout": 120, "metadata": {"tag": tag, **metadata}}
        reply = httpx.post(server.url + "/v2/sandboxes", json=body, headers=KEY)
        assert reply.status_code == 201, reply.text
        made.append(reply.json()["sandboxID"])
        return made[-1]

    yield create
    for sandbox_id in made:
        httpx.delete(f"{server.url}/sandboxes/{sandbox_id}", headers=KEY)


def listed(server: LciServer, tag: str, **params: str) -> httpx.Response:
    reply = httpx.get(
        server.url + "/v2/sandboxes", params={"metadata": f"tag={tag}", **params}, headers=KEY
    )
    assert reply.status_code == 200, reply.text
    return reply


def ids(reply: httpx.Response) -> list[str]:
    return [s["sandboxID"] for s in reply.json()]


def test_pages_carry_a_next_token_until_the_last(server: LciServer, tag: str, make: Make) -> None:
    made = [make() for _ in range(3)]
    first = listed(server, tag, limit="2")
    assert ids(first) == [made[2], made[1]]  # newest first
    assert first.headers["X-Total-Running"] == "3"
    token = first.headers["X-Next-Token"]
    last = listed(server, tag, limit="2", nextToken=token)
    assert ids(last) == [made[0]] and "X-Next-Token" not in last.headers
    # a cursor, not an offset: a sandbox killed between pages does not skip the next one
    httpx.delete(f"{server.url}/sandboxes/{made[2]}", headers=KEY)
    assert ids(listed(server, tag, limit="2", nextToken=token)) == [made[0]]


def test_order_template_state_and_start_time_filter(
    server: LciServer, tag: str, make: Make
) -> None:
    older, newer = make(), make("other")
    assert ids(listed(server, tag, order="asc")) == [older, newer]
    assert ids(listed(server, tag, order="desc")) == [newer, older]
    assert ids(listed(server, tag, template="other")) == [newer]
    assert ids(listed(server, tag, template="unknown")) == []
    assert ids(listed(server, tag, state="paused")) == []  # lci's sandboxes always run
    assert ids(listed(server, tag, state="running,paused")) == [newer, older]
    started = listed(server, tag, order="asc").json()[1]["startedAt"]
    assert ids(listed(server, tag, startedAfter=started)) == [newer]  # at or after
    later = datetime.fromisoformat(started) + timedelta(microseconds=1)
    assert ids(listed(server, tag, startedAfter=later.isoformat())) == []


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"startedBefore": "2024-01-01T00:00:00Z"}, "startedBefore"),
        ({"state": "stopped"}, "state"),
        ({"order": "up"}, "order"),
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"startedAfter": "yesterday"}, "startedAfter"),
        ({"nextToken": "not-a-token"}, "nextToken"),
    ],
)
def test_what_lci_cannot_apply_is_refused_not_ignored(
    server: LciServer, params: dict[str, str], named: str
) -> None:
    reply = httpx.get(server.url + "/v2/sandboxes", params=params, headers=KEY)
    assert reply.status_code == 400, reply.text
    assert reply.json()["code"] == 400 and named in reply.json()["message"]


def test_the_older_list_returns_every_match_on_one_page(
    server: LciServer, tag: str, make: Make
) -> None:
    made = [make() for _ in range(2)]
    reply = httpx.get(server.url + "/sandboxes", params={"metadata": f"tag={tag}"}, headers=KEY)
    assert sorted(ids(reply)) == sorted(made) and "X-Next-Token" not in reply.headers


def test_the_sdk_pages_through_with_its_paginator(
    server: LciServer, tag: str, make: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in [("E2B_API_URL", server.url), ("E2B_API_KEY", API_KEY)]:
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("E2B_DEBUG", raising=False)
    made = [make() for _ in range(3)]
    query = SandboxQuery(metadata={"tag": tag}, state=[SandboxState.RUNNING])
    paginator = Sandbox.list(query=query, limit=1, order="asc")
    pages = []
    while paginator.has_next:
        pages.append([s.sandbox_id for s in paginator.next_items()])
    assert pages == [[made[0]], [made[1]], [made[2]]] and paginator.next_token is None
