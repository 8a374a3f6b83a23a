"""Server switches for models and clients the hosted service does not have: thinking that cannot be
switched on, short-lived implicit containers, and the session's timeout per execution."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.fake_llm import stream
from tests.server.conftest import API_KEY
from tests.server.helpers import SMALL_LIMITS, FakeModel, LciServer, covers

CHAT = "/v1/chat/completions"
NATIVE = "/api/v1/services/aigc/text-generation/generation"
MESSAGES = [{"role": "user", "content": "What is 6*7?"}]
CI = [{"type": "code_interpreter"}]


@pytest.fixture(scope="module")
def picky_server(shared_fake: FakeModel) -> Iterator[LciServer]:
    """Thinking required (the hosted service's rule), implicit containers kept for 1.5 s, and a
    session timeout of 1 s."""
    env = {
        "LCI_SERVER_REQUIRE_THINKING": "true",
        "LCI_SERVER_IMPLICIT_CONTAINER_TTL_S": "1.5",
        "LCI_LIMITS": json.dumps({**SMALL_LIMITS, "timeout_s": 1}),
    }
    with LciServer(shared_fake.base_url, api_key=API_KEY, env=env) as running:
        yield running
        running.stop()
        assert "Traceback" not in running.logs(), running.logs()


def test_thinking_can_be_switched_off(fake: FakeModel, server: LciServer) -> None:
    # Once, models without thinking could not be used ("requires thinking mode").
    with server.client() as client:
        fake.script(stream(text="42"))
        chat = {"model": "m", "messages": MESSAGES, "enable_code_interpreter": True}
        reply = client.post(CHAT, json={**chat, "enable_thinking": False})
        assert reply.status_code == 200 and reply.json()["choices"][0]["message"]["content"] == "42"
        fake.script(stream(text="42"))
        body = {"model": "m", "input": "6*7?", "tools": CI, "reasoning": {"effort": "none"}}
        reply = client.post("/v1/responses", json=body)
        assert reply.status_code == 200 and reply.json()["status"] == "completed"
        fake.script(stream(text="42"))
        parameters = {"enable_code_interpreter": True, "enable_thinking": False}
        reply = client.post(
            NATIVE, json={"model": "m", "input": {"messages": MESSAGES}, "parameters": parameters}
        )
        assert reply.status_code == 200
    fake.check()
    sent = [r["chat_template_kwargs"] for r in fake.chat_requests()]
    assert sent == [{"enable_thinking": False}] * 3  # passed on to the model server as asked


@covers(2)
def test_a_server_that_requires_thinking_refuses_it_off(
    fake: FakeModel, picky_server: LciServer
) -> None:
    with picky_server.client() as client:
        chat = {"model": "m", "messages": MESSAGES, "enable_code_interpreter": True}
        for streamed in (False, True):
            reply = client.post(CHAT, json={**chat, "enable_thinking": False, "stream": streamed})
            assert reply.status_code == 400
            error = reply.json()["error"]
            assert error["code"] == "invalid_parameter_error"
            assert error["param"] == "enable_thinking" and "thinking" in error["message"]
        body = {"model": "m", "input": "x", "tools": CI, "reasoning": {"effort": "none"}}
        error = client.post("/v1/responses", json=body).json()["error"]
        # The error names the field the client sent, not one it never did.
        assert error["param"] == "reasoning.effort" and '"none"' in error["message"]
        parameters = {"enable_code_interpreter": True, "enable_thinking": False}
        native = {"model": "m", "input": {"messages": MESSAGES}, "parameters": parameters}
        reply = client.post(NATIVE, json=native)
        assert (reply.status_code, reply.json()["code"]) == (400, "InvalidParameter")
    assert fake.requests == []  # refused before any backend call


def _sessions(client: httpx.Client) -> set[str]:
    return {s["id"] for s in client.get("/v1/sessions").json()["sessions"]}


def _container(response: httpx.Response) -> str:
    calls = [i for i in response.json()["output"] if i["type"] == "code_interpreter_call"]
    return str(calls[0]["container_id"])


def _expiry_minutes(client: httpx.Client, container_id: str) -> int:
    reply = client.get(f"/v1/containers/{container_id}")
    assert reply.json()["expires_after"]["anchor"] == "last_active_at"
    return int(reply.json()["expires_after"]["minutes"])


def test_implicit_containers_are_short_lived_unless_continued(
    fake: FakeModel, picky_server: LciServer
) -> None:
    # Once, every Responses request without a container kept a sandbox for 30 minutes.
    with picky_server.client() as client:
        fake.script(stream(calls=["x = 1"]), stream(text="set"))
        body = {"model": "m", "input": "set x", "tools": CI, "enable_thinking": True}
        forgotten = _container(client.post("/v1/responses", json=body))
        fake.script(stream(calls=["y = 2"]), stream(text="set"))
        kept = _container(client.post("/v1/responses", json=body))
        assert {forgotten, kept} <= _sessions(client)
        # Each reports the expiry that applies to it: the short one (1.5 s, whole minutes on the
        # wire), not the 20 minutes of a container the client named.
        assert _expiry_minutes(client, kept) == 1
        # The client continues in `kept` before its time is up: it is the client's now.
        fake.script(stream(calls=["y + 1"]), stream(text="3"))
        tools = [{"type": "code_interpreter", "container": kept}]
        reply = client.post("/v1/responses", json={**body, "tools": tools})
        assert _container(reply) == kept
        assert _expiry_minutes(client, kept) == 20
        deadline = time.monotonic() + 20
        while forgotten in _sessions(client) and time.monotonic() < deadline:
            time.sleep(0.2)
        sessions = _sessions(client)
        assert forgotten not in sessions and kept in sessions
    fake.check()


def test_each_execution_gets_the_session_timeout(fake: FakeModel, picky_server: LciServer) -> None:
    # Once, with no per-call timeout an execution had the whole deadline (600 s).
    fake.script(stream(calls=["while True: pass"]), stream(text="It loops forever."))
    body = {"model": "m", "input": "loop", "tools": CI, "enable_thinking": True}
    started = time.monotonic()
    with picky_server.client() as client:
        response = client.post("/v1/responses", json=body).json()
    assert time.monotonic() - started < 30
    fake.check()
    (call,) = [i for i in response["output"] if i["type"] == "code_interpreter_call"]
    assert response["status"] == "completed"
    timeout_text = fake.chat_requests()[1]["messages"][-1]["content"]
    assert "exceeded the time limit of 1 s" in timeout_text
    assert call["status"] == "completed"
