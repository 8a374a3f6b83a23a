"""Surface C, DashScope's native generation API, against `lci serve` with the real `dashscope` SDK
and raw HTTP."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

import dashscope
import pytest

from tests.fake_llm import SSE, Call, HTTPError, error_event, stream
from tests.server import checks
from tests.server.conftest import API_KEY
from tests.server.helpers import QUESTION, FakeModel, LciServer, covers, sse_events, two_executions

PATH = "/api/v1/services/aigc/text-generation/generation"
MESSAGES = [{"role": "user", "content": QUESTION}]
CI = {"enable_code_interpreter": True, "enable_thinking": True, "result_format": "message"}
REASONING = (
    "The user wants two executions. First, compute 123**23."
    "The result is known. Now divide it by 5."
    "Both results are ready; report them."
)
ANSWER = "123^23 = 1169008215014432917465348578887506800769541157267. Divided by 5: 2.338016430028866e+47."
CODES = ["123**23", "1169008215014432917465348578887506800769541157267 / 5"]


@pytest.fixture
def native(server: LciServer) -> Iterator[LciServer]:
    """The SDK pointed at lci, as the product documentation says to."""
    saved = dashscope.base_http_api_url
    dashscope.base_http_api_url = server.url + "/api/v1"
    yield server
    dashscope.base_http_api_url = saved


def body(parameters: dict[str, Any], messages: list[dict[str, Any]] = MESSAGES) -> dict[str, Any]:
    return {"model": "qwen3-max", "input": {"messages": messages}, "parameters": parameters}


def tools_of(payloads: list[dict[str, Any]]) -> list[str]:
    return [t["code_interpreter"]["code"] for t in payloads[-1]["output"]["tool_info"]]


@covers(9, 45, 46, 47, 48, 49, 50)
def test_raw_stream(fake: FakeModel, server: LciServer) -> None:
    fake.script(*two_executions())
    events = sse_events(server, PATH, body(CI), headers={"X-DashScope-SSE": "enable"})
    fake.check()
    payloads = checks.dashscope_stream(events)
    messages = [p["output"]["choices"][0]["message"] for p in payloads]
    assert "".join(m["reasoning_content"] for m in messages) == REASONING  # 47
    assert "".join(m["content"] for m in messages) == ANSWER
    assert tools_of(payloads) == CODES  # 48
    counts = [
        p["usage"].get("plugins", {}).get("code_interpreter", {}).get("count") for p in payloads
    ]
    assert counts[-1] == 2 == len(payloads[-1]["output"]["tool_info"])  # 9, 49
    first_tool = next(i for i, p in enumerate(payloads) if "tool_info" in p["output"])
    assert all("tool_info" in p["output"] for p in payloads[first_tool:])  # 48
    assert payloads[-1]["usage"]["output_tokens"] == 185
    assert payloads[-1]["usage"]["output_tokens_details"]["reasoning_tokens"] == 85


@covers(44)
@pytest.mark.parametrize(
    ("headers", "parameters"),
    [
        ({"X-DashScope-SSE": "enable"}, {}),
        ({"Accept": "text/event-stream"}, {}),
        ({}, {"stream": True}),
    ],
    ids=["header", "accept", "parameter"],
)
def test_what_selects_streaming(
    fake: FakeModel, server: LciServer, headers: dict[str, str], parameters: dict[str, Any]
) -> None:
    fake.script(stream(text="hello"))
    with (
        server.client() as client,
        client.stream("POST", PATH, json=body({**CI, **parameters}), headers=headers) as reply,
    ):
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        reply.read()
    fake.check()


@covers(44)
def test_unstreamed_request_gets_one_json_body(fake: FakeModel, server: LciServer) -> None:
    fake.script(*two_executions())
    with server.client() as client:
        reply = client.post(PATH, json=body(CI))
    fake.check()
    assert reply.headers["content-type"] == "application/json"
    data = reply.json()
    choice = data["output"]["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert choice["message"] == {
        "role": "assistant",
        "content": ANSWER,
        "reasoning_content": REASONING,
    }
    assert tools_of([data]) == CODES
    assert data["usage"]["plugins"] == {"code_interpreter": {"count": 2}}
    assert data["usage"]["total_tokens"] == 3780


@covers(9, 44, 46, 47, 48, 49, 50, 51)
def test_the_product_sample_runs_unmodified(
    fake: FakeModel, native: LciServer, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.script(*two_executions())
    responses = dashscope.Generation.call(
        api_key=API_KEY,
        model="qwen3-max-2026-01-23",
        messages=MESSAGES,
        enable_code_interpreter=True,
        enable_thinking=True,
        result_format="message",
        stream=True,
        incremental_output=True,
    )
    tool_infos = []
    chunk: Any = None
    for chunk in responses:
        assert chunk.status_code == 200
        tool_info = chunk.output.get("tool_info")
        if tool_info:
            tool_infos.append(tool_info)
        message = chunk.output.choices[0].message
        if message.reasoning_content:
            print(message.reasoning_content, end="", flush=True)
        if message.content:
            print(message.content, end="", flush=True)
    print()
    print(chunk.usage.plugins)
    fake.check()
    out = capsys.readouterr().out
    assert out.startswith(REASONING + ANSWER)
    assert out.rstrip().endswith("{'code_interpreter': {'count': 2}}")
    assert [t["code_interpreter"]["code"] for t in tool_infos[-1]] == CODES


@covers(52)
def test_sdk_merges_incremental_output_when_asked_for_cumulative(
    fake: FakeModel, native: LciServer
) -> None:
    fake.script(*two_executions())
    chunks = list(
        dashscope.Generation.call(
            api_key=API_KEY,
            model="qwen3-max",
            messages=MESSAGES,
            stream=True,
            incremental_output=False,
            **CI,
        )
    )
    fake.check()
    contents = [c.output.choices[0].message.content for c in chunks]
    for before, after in itertools.pairwise(contents):
        assert after.startswith(before)
    assert contents[-1] == ANSWER


@covers(47)
def test_cumulative_output_served_on_request(fake: FakeModel, server: LciServer) -> None:
    fake.script(*two_executions())
    parameters = {**CI, "incremental_output": False}
    events = sse_events(server, PATH, body(parameters), headers={"X-DashScope-SSE": "enable"})
    fake.check()
    payloads = checks.dashscope_stream(events)
    messages = [p["output"]["choices"][0]["message"] for p in payloads]
    for before, after in itertools.pairwise(messages):
        assert after["content"].startswith(before["content"])
        assert after["reasoning_content"].startswith(before["reasoning_content"])
    assert (messages[-1]["content"], messages[-1]["reasoning_content"]) == (ANSWER, REASONING)


@covers(1, 53, 54)
def test_http_errors(fake: FakeModel, native: LciServer) -> None:
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({**CI, "tools": [tool]}, 400, "InvalidParameter"),  # 1
        ({**CI, "result_format": "text"}, 400, "InvalidParameter"),  # 53
    ]
    with native.client() as client:
        for parameters, status, code in cases:
            reply = client.post(PATH, json=body(parameters), headers={"X-DashScope-SSE": "enable"})
            assert reply.status_code == status
            error = reply.json()
            assert set(error) == {"code", "message", "request_id"} and error["code"] == code
        reply = client.post(PATH, json=body(CI), headers={"Authorization": "Bearer wrong"})
        assert (reply.status_code, reply.json()["code"]) == (401, "InvalidApiKey")
    assert fake.requests == []
    response = dashscope.Generation.call(  # the SDK surfaces them as responses
        api_key=API_KEY, model="m", messages=MESSAGES, tools=[tool], **CI
    )
    assert (response.status_code, response.code) == (400, "InvalidParameter")
    assert "cannot be used together" in response.message


@covers(13, 54)
def test_errors_before_and_during_the_stream(fake: FakeModel, native: LciServer) -> None:
    refused = {"error": {"message": "no such model", "type": "x", "param": None, "code": 404}}
    fake.script(HTTPError(404, refused))
    first = next(
        iter(
            dashscope.Generation.call(
                api_key=API_KEY, model="m", messages=MESSAGES, stream=True, **CI
            )
        )
    )
    assert (first.status_code, first.code) == (404, "ModelNotFound")
    assert "no such model" in first.message
    broken = stream(reasoning="Thinking hard about this one.", calls=["1+1"], drop_after=4)
    fake.script(broken)
    chunks = list(
        dashscope.Generation.call(api_key=API_KEY, model="m", messages=MESSAGES, stream=True, **CI)
    )
    fake.check()
    assert all(c.status_code == 200 for c in chunks[:-1])
    assert (chunks[-1].status_code, chunks[-1].code) == (502, "InternalError")
    fake.script(broken)
    events = sse_events(native, PATH, body(CI), headers={"X-DashScope-SSE": "enable"})
    fake.check()
    last = events[-1].raw.split("\n")
    assert last[1:4] == ["event:error", ":HTTP_STATUS/502", "status:502"]
    assert json.loads(last[4][len("data:") :])["code"] == "InternalError"


@covers(3)
def test_without_the_flag_it_is_a_plain_completion(fake: FakeModel, native: LciServer) -> None:
    fake.script(stream(reasoning="hm", text="Hello there"))
    chunks = list(
        dashscope.Generation.call(
            api_key=API_KEY,
            model="m",
            messages=MESSAGES,
            result_format="message",
            stream=True,
            incremental_output=True,
            temperature=0.2,
        )
    )
    (sent,) = fake.chat_requests()
    assert "tools" not in sent and sent["messages"] == MESSAGES and sent["temperature"] == 0.2
    text = "".join(c.output.choices[0].message.content for c in chunks)
    assert text == "Hello there"
    assert "".join(c.output.choices[0].message.reasoning_content for c in chunks) == "hm"
    # result_format text, unstreamed
    fake.script(stream(text="Plain"))
    response = dashscope.Generation.call(
        api_key=API_KEY, model="m", prompt="hi", result_format="text"
    )
    assert response.status_code == 200 and response.output.text == "Plain"
    # the client's own function tools go to the model server, its calls come back
    tool = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}
    fake.script(stream(calls=[Call(name="weather", arguments='{"city": "Oslo"}')]))
    response = dashscope.Generation.call(
        api_key=API_KEY, model="m", messages=MESSAGES, tools=[tool], result_format="message"
    )
    assert fake.chat_requests()[-1]["tools"] == [tool]
    (call,) = response.output.choices[0].message.tool_calls
    assert call["function"] == {"name": "weather", "arguments": '{"city": "Oslo"}'}
    assert response.output.choices[0].finish_reason == "tool_calls"
    fake.check()


@pytest.mark.parametrize(
    "broken",
    [
        stream(text="Hello there, this answer is cut short", drop_after=3),
        SSE([{"choices": [{"index": 0, "delta": {"content": "Hello"}}]}, error_event()]),
    ],
    ids=["dropped", "error-event"],
)
def test_unstreamed_plain_completion_that_breaks_off_is_an_error(
    fake: FakeModel, server: LciServer, broken: SSE
) -> None:
    """Text had already arrived, but nothing was sent to the client yet: the failure is the
    status of the answer, not a 200 with partial text."""
    fake.script(broken)
    with server.client() as client:
        reply = client.post(PATH, json=body({"result_format": "message"}))
    fake.check()
    assert reply.status_code == 502, reply.text
    assert reply.json()["code"] == "InternalError"
