"""What real small models and broken model servers do, through `lci serve`'s three surfaces: answers
cut at the token limit, calls written as python blocks, repeats, cached tokens, garbage streams."""

from __future__ import annotations

from typing import Any

import httpx

from tests.fake_llm import malformed, python_block, stream
from tests.server import checks
from tests.server.helpers import FakeModel, LciServer, sse_events

CHAT = "/v1/chat/completions"
NATIVE = "/api/v1/services/aigc/text-generation/generation"
MESSAGES = [{"role": "user", "content": "What is 7**77?"}]
CHAT_CI = {"model": "m", "messages": MESSAGES, "enable_code_interpreter": True}
NATIVE_CI = {
    "model": "m",
    "input": {"messages": MESSAGES},
    "parameters": {"enable_code_interpreter": True, "result_format": "message"},
}
RESPONSES_CI = {"model": "m", "input": "What is 7**77?", "tools": [{"type": "code_interpreter"}]}
VALUE = str(7**77)


def _cut_short() -> list[Any]:
    return [stream(calls=["7**77"]), stream(text="7**77 = 1188", finish="length")]


def test_a_reply_cut_at_the_token_limit_is_reported_on_every_surface(
    fake: FakeModel, server: LciServer
) -> None:
    # Once, upstream finish_reason length was reported as stop / completed.
    fake.script(*_cut_short())
    chunks = checks.chat_stream(sse_events(server, CHAT, {**CHAT_CI, "stream": True}))
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "length"
    fake.script(*_cut_short())
    with server.client() as client:
        reply = client.post(CHAT, json=CHAT_CI).json()
        assert reply["choices"][0]["finish_reason"] == "length"
        fake.script(*_cut_short())
        response = client.post("/v1/responses", json=RESPONSES_CI).json()
        assert response["status"] == "incomplete"
        assert response["incomplete_details"] == {"reason": "max_output_tokens"}
        assert response["output"][-1]["status"] == "incomplete"
        fake.script(*_cut_short())
        native = client.post(NATIVE, json=NATIVE_CI).json()
        assert native["output"]["choices"][0]["finish_reason"] == "length"
    fake.script(*_cut_short())
    events = sse_events(server, "/v1/responses", {**RESPONSES_CI, "stream": True})
    last = events[-1].json()  # (the grammar check of `checks` expects a completed message)
    assert last["type"] == "response.incomplete"
    assert last["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    fake.check()


def test_python_blocks_run_by_default_until_native_calls(
    fake: FakeModel, server: LciServer
) -> None:
    # `lci serve` runs fenced python blocks (auto), and a request can switch it off.
    fake.script(stream(text=python_block("print(7**77)", "Let me compute:\n")), stream(text=VALUE))
    with server.client() as client:
        reply = client.post(NATIVE, json=NATIVE_CI).json()
        assert reply["usage"]["plugins"] == {"code_interpreter": {"count": 1}}
        assert reply["output"]["tool_info"] == [
            {"type": "code_interpreter", "code_interpreter": {"code": "print(7**77)\n"}}
        ]
        assert VALUE in fake.chat_requests()[1]["messages"][-1]["content"]
        fake.script(stream(text=python_block("print(7**77)", "Run this:\n")))
        reply = client.post(CHAT, json={**CHAT_CI, "python_blocks": False}).json()
        assert (
            reply["choices"][0]["message"]["content"] == "Run this:\n```python\nprint(7**77)\n```"
        )
        assert "python_blocks" not in fake.chat_requests()[-1]
    fake.check()


def test_responses_tool_choice(fake: FakeModel, server: LciServer) -> None:
    # tool_choice required goes upstream (first round); none runs no loop at all.
    fake.script(stream(calls=["7**77"]), stream(text=VALUE))
    with server.client() as client:
        reply = client.post("/v1/responses", json={**RESPONSES_CI, "tool_choice": "required"})
        assert reply.json()["tool_choice"] == "required"
        requests = fake.chat_requests()
        assert [r["tool_choice"] for r in requests] == ["required", "auto"]
        fake.reset()
        fake.script(stream(text="I may not run code."))
        reply = client.post("/v1/responses", json={**RESPONSES_CI, "tool_choice": "none"})
        assert reply.json()["status"] == "completed"
        (request,) = fake.chat_requests()
        assert "tools" not in request and "tool_choice" not in request
        fake.reset()
        named = {"type": "code_interpreter"}
        fake.script(stream(calls=["1"]), stream(text="1"))
        reply = client.post("/v1/responses", json={**RESPONSES_CI, "tool_choice": named})
        assert reply.json()["tool_choice"] == named
        assert fake.chat_requests()[0]["tool_choice"] == "required"
    fake.check()


def _repeats() -> list[Any]:
    return [stream(calls=["7**77"]), stream(calls=["7**77"]), stream(text=VALUE)]


def test_refused_repeats_are_neither_shown_nor_counted(fake: FakeModel, server: LciServer) -> None:
    # One real execution, and a repeat lci answered itself.
    fake.script(*_repeats())
    with server.client() as client:
        response = client.post("/v1/responses", json=RESPONSES_CI).json()
        calls = [item for item in response["output"] if item["type"] == "code_interpreter_call"]
        assert len(calls) == 1 and VALUE in calls[0]["outputs"][-1]["logs"]
        assert response["usage"]["x_tools"] == {"code_interpreter": {"count": 1}}
        fake.script(*_repeats())
        native = client.post(NATIVE, json=NATIVE_CI).json()
        assert native["usage"]["plugins"] == {"code_interpreter": {"count": 1}}
        assert len(native["output"]["tool_info"]) == 1
    fake.script(*_repeats())
    payloads = checks.responses_stream(
        sse_events(server, "/v1/responses", {**RESPONSES_CI, "stream": True})
    )
    added = [p for p in payloads if p["type"] == "response.output_item.added"]
    assert [p["item"]["type"] for p in added].count("code_interpreter_call") == 1
    fake.check()


def test_chat_usage_reports_cached_tokens(fake: FakeModel, server: LciServer) -> None:
    # Once, prompt_tokens_details was null.
    turns = [stream(calls=["1+1"], cached=64), stream(text="2", cached=96)]
    fake.script(*turns)
    with server.client() as client:
        usage = client.post(CHAT, json=CHAT_CI).json()["usage"]
    assert usage["prompt_tokens_details"] == {"cached_tokens": 160}
    fake.script(*turns)
    body = {**CHAT_CI, "stream": True, "stream_options": {"include_usage": True}}
    chunks = checks.chat_stream(sse_events(server, CHAT, body))
    assert chunks[-1]["usage"]["prompt_tokens_details"] == {"cached_tokens": 160}
    fake.check()


def test_no_reasoning_is_null_not_empty(fake: FakeModel, server: LciServer) -> None:
    # A model without thinking is told apart from one that thought nothing.
    fake.script(stream(text="hello"))
    with server.client() as client:
        message = client.post(CHAT, json=CHAT_CI).json()["choices"][0]["message"]
    assert message["content"] == "hello" and message["reasoning_content"] is None
    fake.check()


def test_malformed_upstream_data_is_an_error_on_every_surface(
    fake: FakeModel, server: LciServer
) -> None:
    # Once, `data: {this is not json` gave HTTP 500 and a reset connection.
    with server.client() as client:
        for streamed in (False, True):
            for path, body in (
                (CHAT, CHAT_CI),
                ("/v1/responses", RESPONSES_CI),
                (NATIVE, NATIVE_CI),
                (CHAT, {"model": "m", "messages": MESSAGES}),  # forwarded, no loop
            ):
                fake.script(malformed(after=3 if streamed else 1))
                _expect_upstream_error(client, path, {**body, "stream": streamed}, streamed)
                # The same connection serves the next request.
                fake.script(stream(text="fine"))
                reply = client.post(CHAT, json={**CHAT_CI, "stream": False})
                assert reply.json()["choices"][0]["message"]["content"] == "fine"
    fake.check()


def _expect_upstream_error(
    client: httpx.Client, path: str, body: dict[str, Any], streamed: bool
) -> None:
    if path == NATIVE:
        body = {**body, "parameters": {**body["parameters"], "stream": streamed}}
        del body["stream"]
    reply = client.post(path, json=body)
    text = reply.text
    assert "malformed" in text, text
    if not streamed:
        assert reply.status_code == 502, text
        data = reply.json()
        if path == NATIVE:
            assert data["code"] == "InternalError" and data["request_id"]
        else:
            assert data["error"]["type"] == "server_error"
            assert data["error"]["code"] == "upstream_error"
        return
    # The stream had begun ("Let me think." was shown): the error is its last event.
    if path == NATIVE:
        assert "event:error" in text and "status:502" in text
    elif path == CHAT:
        assert '"code":"upstream_error"' in text.replace(" ", "") and text.endswith(
            "data: [DONE]\n\n"
        )
    else:
        assert "event: response.failed" in text
