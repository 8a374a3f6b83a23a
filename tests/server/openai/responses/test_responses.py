"""Surface A, the Responses API, against `lci serve` with the real `openai` SDK and raw HTTP."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from openai.types.responses import Response

from tests.fake_llm import SSE, Call, HTTPError, stream
from tests.server import checks
from tests.server.helpers import QUESTION, FakeModel, LciServer, covers, sse_events, two_executions

CI = [{"type": "code_interpreter"}]


def sdk(server: LciServer) -> openai.OpenAI:
    return server.openai()


def raw_stream(server: LciServer, **body: Any) -> list[dict[str, Any]]:
    events = sse_events(server, "/v1/responses", {"model": "m", "stream": True, **body})
    return checks.responses_stream(events)


@covers(9, 14, 18, 19, 21, 22, 23, 24, 25, 26, 27, 29, 30, 33)
def test_stream_follows_the_event_grammar(fake: FakeModel, server: LciServer) -> None:
    fake.script(*two_executions())
    payloads = raw_stream(server, input=QUESTION, tools=CI, enable_thinking=True)
    fake.check()
    final = payloads[-1]["response"]
    assert final["status"] == "completed"
    kinds = [item["type"] for item in final["output"]]
    assert kinds == ["reasoning", "code_interpreter_call"] * 2 + ["reasoning", "message"]  # 14
    calls = checks.code_calls_well_formed(final["output"])
    checks.usage_complete(final["usage"])
    assert final["usage"]["x_tools"]["code_interpreter"]["count"] == len(calls) == 2  # 9
    assert final["tools"] == [{"type": "code_interpreter", "container": {"type": "auto"}}]  # 19
    Response.model_validate(final)  # strictly what the SDK's type describes


@covers(8, 9, 14, 15, 16, 18)
def test_create_non_streaming_with_the_sdk(fake: FakeModel, server: LciServer) -> None:
    fake.script(*two_executions())
    response = sdk(server).responses.create(
        model="qwen3-max", input=QUESTION, tools=CI, extra_body={"enable_thinking": True}
    )
    fake.check()
    data = response.model_dump()
    assert (data["object"], data["status"]) == ("response", "completed")
    assert data["id"].startswith("resp_")
    kinds = [item["type"] for item in data["output"]]
    assert kinds == ["reasoning", "code_interpreter_call"] * 2 + ["reasoning", "message"]
    calls = checks.code_calls_well_formed(data["output"])
    assert [c["outputs"][-1]["logs"] for c in calls] == [
        "1169008215014432917465348578887506800769541157267",
        "2.338016430028866e+47",
    ]
    messages = [item for item in response.output if item.type == "message"]
    assert response.output_text == "".join(
        part.text for m in messages for part in m.content if part.type == "output_text"
    )  # 15
    assert response.output_text.startswith("123^23 = ")
    usage = data["usage"]
    checks.usage_complete(usage)
    # 8: the sum of the three rounds' usage
    assert (usage["input_tokens"], usage["output_tokens"], usage["total_tokens"]) == (
        3595,
        185,
        3780,
    )
    assert usage["output_tokens_details"]["reasoning_tokens"] == 85
    assert response.usage is not None and response.usage.x_tools == {  # type: ignore[attr-defined]
        "code_interpreter": {"count": 2}
    }


@covers(31, 32)
def test_sdk_stream_helper_and_the_product_sample(fake: FakeModel, server: LciServer) -> None:
    fake.script(*two_executions())
    printed: list[str] = []
    completed: dict[str, Any] = {}
    with sdk(server).responses.stream(
        model="m", input=QUESTION, tools=CI, extra_body={"enable_thinking": True}
    ) as events:
        for event in events:
            # The product documentation's parsing loop, as written there.
            if event.type == "response.output_item.done" and hasattr(event.item, "code"):
                printed.append(event.item.code)
                printed.append(event.item.outputs[0].logs)
            if event.type == "response.completed":
                completed = event.response.model_dump()
        final = events.get_final_response()
    fake.check()
    assert printed == [
        "123**23",
        "1169008215014432917465348578887506800769541157267",
        "1169008215014432917465348578887506800769541157267 / 5",
        "2.338016430028866e+47",
    ]
    assert final.model_dump() == completed


def test_create_streaming_with_the_sdk(fake: FakeModel, server: LciServer) -> None:
    fake.script(*two_executions())
    events = list(sdk(server).responses.create(model="m", input=QUESTION, tools=CI, stream=True))
    fake.check()
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert events[-1].response.usage.x_tools == {"code_interpreter": {"count": 2}}  # type: ignore[union-attr]


@covers(28)
def test_code_runs_between_interpreting_and_completed(fake: FakeModel, server: LciServer) -> None:
    fake.script(stream(calls=["import time\ntime.sleep(0.8)\n'slept'"]), stream(text="Done."))
    events = sse_events(server, "/v1/responses", {"input": "x", "tools": CI, "stream": True})
    fake.check()
    at = {e.fields.get("event"): e.at for e in events if e.fields}
    assert (
        at["response.code_interpreter_call.completed"]
        - at["response.code_interpreter_call.interpreting"]
        >= 0.7
    )
    # The next round was only asked for after the call's item was done.
    assert any(": keep-alive" in e.raw for e in events)  # the quiet second carried keep-alives


@covers(34, 16)
def test_an_exception_in_the_code_is_a_result(fake: FakeModel, server: LciServer) -> None:
    fake.script(stream(calls=["print('hi')\n1/0"]), stream(text="It failed."))
    response = sdk(server).responses.create(model="m", input="x", tools=CI)
    fake.check()
    (call,) = checks.code_calls_well_formed(response.model_dump()["output"])
    assert call["status"] == "completed"
    logs = call["outputs"][-1]["logs"]
    assert logs.startswith("hi\n") and "ZeroDivisionError" in logs and "Traceback" in logs
    assert response.output_text == "It failed."
    assert "ZeroDivisionError" in fake.chat_requests()[1]["messages"][-1]["content"]


@covers(19, 20)
@pytest.mark.parametrize(
    "tools",
    [
        [{"type": "code_interpreter", "container": "auto"}],
        [{"type": "code_interpreter", "container": {"type": "auto", "memory_limit": "1g"}}],
        [{"type": "code_interpreter"}, {"type": "web_search"}, {"type": "web_extractor"}],
    ],
    ids=["auto", "object", "with-unsupported-builtins"],
)
def test_tool_forms_are_accepted(
    fake: FakeModel, server: LciServer, tools: list[dict[str, Any]]
) -> None:
    fake.script(stream(text="fine"))
    response = sdk(server).responses.create(model="m", input="x", tools=tools)  # type: ignore[arg-type]
    fake.check()
    assert response.output_text == "fine"
    assert response.to_dict()["tools"] == [
        {"type": "code_interpreter", "container": {"type": "auto"}}
    ]
    assert response.usage.x_tools == {"code_interpreter": {"count": 0}}  # type: ignore[union-attr]
    assert [t["function"]["name"] for t in fake.chat_requests()[0]["tools"]] == ["code_interpreter"]


@covers(1, 33)
def test_requests_that_break_the_rules_are_400(fake: FakeModel, server: LciServer) -> None:
    function = {"type": "function", "name": "f", "parameters": {"type": "object"}}
    bad = [
        {"tools": [*CI, function]},
        {"tools": CI, "input": [{"type": "mystery"}]},
        {"tools": CI, "temperature": 7},
    ]
    with server.client() as client:
        for body in bad:
            for stream_it in (False, True):
                reply = client.post(
                    "/v1/responses", json={"model": "m", "input": "x", "stream": stream_it, **body}
                )
                assert reply.status_code == 400, reply.text
                error = reply.json()["error"]
                assert set(error) == {"message", "type", "param", "code"}
                assert error["type"] == "invalid_request_error"
                assert isinstance(error["code"], str)
    assert fake.requests == []  # 1: refused before any backend call
    with pytest.raises(openai.BadRequestError, match="cannot be used together"):
        sdk(server).responses.create(model="m", input="x", tools=[*CI, function])  # type: ignore[list-item]


@covers(33, 13)
def test_a_failure_after_the_stream_began_ends_it_with_response_failed(
    fake: FakeModel, server: LciServer
) -> None:
    broken = stream(reasoning="Thinking about it for a while.", calls=["1+1"], drop_after=3)
    fake.script(broken)  # something was shown already, so the round is not retried
    payloads = raw_stream(server, input="x", tools=CI)
    fake.check()
    last = payloads[-1]
    assert last["type"] == "response.failed"
    assert last["response"]["status"] == "failed"
    assert last["response"]["error"]["code"] == "server_error"


@covers(13, 33)
def test_backend_errors_before_any_output(fake: FakeModel, server: LciServer) -> None:
    refused = {
        "error": {"message": "no such model", "type": "NotFound", "param": None, "code": 404}
    }
    fake.script(HTTPError(404, refused))
    with server.client() as client:
        reply = client.post("/v1/responses", json={"input": "x", "tools": CI, "stream": True})
    assert reply.status_code == 404
    error = reply.json()["error"]
    assert "no such model" in error["message"] and isinstance(error["code"], str)
    fast = {"retry-after-ms": "10"}
    fake.script(*[HTTPError(500, headers=fast)] * 3)
    with server.client() as client:
        reply = client.post("/v1/responses", json={"input": "x", "tools": CI})
    assert reply.status_code == 502 and reply.json()["error"]["type"] == "server_error"
    fake.check()


@covers(17)
def test_strict_include_nulls_outputs(fake: FakeModel, strict_server: LciServer) -> None:
    fake.script(stream(calls=["1+1"]), stream(text="2"))
    plain = sdk(strict_server).responses.create(model="m", input="x", tools=CI)
    fake.script(stream(calls=["1+1"]), stream(text="2"))
    included = sdk(strict_server).responses.create(
        model="m", input="x", tools=CI, include=["code_interpreter_call.outputs"]
    )
    fake.check()
    assert plain.model_dump()["output"][0]["outputs"] is None
    assert included.model_dump()["output"][0]["outputs"] == [{"type": "logs", "logs": "2"}]


@covers(7)
def test_round_cap_final_call(fake: FakeModel, server: LciServer) -> None:
    """Default cap of 20 model calls: the 20th is sent without tools and answers."""
    fake.script(*[stream(calls=[f"{i} + 1"]) for i in range(19)], stream(text="enough"))
    response = sdk(server).responses.create(model="m", input="x", tools=CI)
    fake.check()
    requests = fake.chat_requests()
    assert len(requests) == 20 and "tools" not in requests[-1] and "tool_choice" not in requests[-1]
    assert {r["tool_choice"] for r in requests[:-1]} == {"auto"}
    assert response.status == "completed" and response.output_text == "enough"
    assert response.usage.x_tools == {"code_interpreter": {"count": 19}}  # type: ignore[union-attr]


@covers(7)
def test_round_cap_stop_ends_incomplete(fake: FakeModel, strict_server: LciServer) -> None:
    fake.script(stream(calls=["1"]), stream(calls=["2"]))
    payloads = raw_stream(strict_server, input="x", tools=CI)
    fake.check()
    assert payloads[-1]["type"] == "response.incomplete"
    assert payloads[-1]["response"]["status"] == "incomplete"


@covers(12)
def test_calls_written_as_text_run_and_stay_hidden(fake: FakeModel, server: LciServer) -> None:
    tagged = '<tool_call>\n{"name": "code_interpreter", "arguments": {"code": "6*7"}}\n</tool_call>'
    xml = (
        "<tool_call>\n<function=code_interpreter>\n<parameter=code>\n6*8\n</parameter>\n"
        "</function>\n</tool_call>"
    )
    fake.script(stream(text=tagged), stream(text=xml), stream(text="done"))
    response = sdk(server).responses.create(model="m", input="x", tools=CI)
    fake.check()
    calls = checks.code_calls_well_formed(response.model_dump()["output"])
    assert [c["outputs"][-1]["logs"] for c in calls] == ["42", "48"]
    assert "<tool_call>" not in json.dumps(response.model_dump()["output"])
    assert response.output_text == "done"


@covers(10, 11)
@pytest.mark.parametrize("flavor", ["vllm", "vllm-legacy", "vllm-both", "llamacpp", "ollama"])
def test_every_backend_flavor_gives_the_same_response(
    fake: FakeModel, server: LciServer, flavor: str
) -> None:
    fake.script(*two_executions(flavor))
    response = sdk(server).responses.create(model="m", input=QUESTION, tools=CI)
    fake.check()
    shape = [
        (item["type"], item.get("summary"), item.get("code"), item.get("outputs"))
        for item in response.model_dump()["output"]
        if item["type"] != "message"
    ]
    assert shape == [
        (
            "reasoning",
            [
                {
                    "type": "summary_text",
                    "text": "The user wants two executions. First, compute 123**23.",
                }
            ],
            None,
            None,
        ),
        (
            "code_interpreter_call",
            None,
            "123**23",
            [{"type": "logs", "logs": "1169008215014432917465348578887506800769541157267"}],
        ),
        (
            "reasoning",
            [{"type": "summary_text", "text": "The result is known. Now divide it by 5."}],
            None,
            None,
        ),
        (
            "code_interpreter_call",
            None,
            "1169008215014432917465348578887506800769541157267 / 5",
            [{"type": "logs", "logs": "2.338016430028866e+47"}],
        ),
        (
            "reasoning",
            [{"type": "summary_text", "text": "Both results are ready; report them."}],
            None,
            None,
        ),
    ]


def test_images_come_first_in_outputs(fake: FakeModel, server: LciServer) -> None:
    code = (
        "import base64\n"
        "class Dot:\n"
        "    def _repr_png_(self):\n"
        "        return base64.b64decode('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
        "+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==')\n"
        "print('drawn')\n"
        "Dot()"
    )
    fake.script(stream(calls=[code]), stream(text="a dot"))
    response = sdk(server).responses.create(model="m", input="x", tools=CI)
    fake.check()
    (call,) = checks.code_calls_well_formed(response.model_dump()["output"])
    assert call["outputs"][0]["url"].startswith("data:image/png;base64,")
    assert call["outputs"][-1] == {"type": "logs", "logs": "drawn\n"}


def test_without_the_code_interpreter_it_is_a_plain_completion(
    fake: FakeModel, server: LciServer
) -> None:
    fake.script(stream(reasoning="Easy.", text="Hello!"))
    response = sdk(server).responses.create(model="m", input="hi", instructions="Be brief.")
    fake.check()
    (request,) = fake.chat_requests()
    assert "tools" not in request and request["messages"][0] == {
        "role": "system",
        "content": "Be brief.",
    }
    assert response.output_text == "Hello!"
    assert [item.type for item in response.output] == ["reasoning", "message"]
    assert "x_tools" not in response.model_dump()["usage"]


def test_stream_that_never_starts_is_an_http_error(fake: FakeModel, server: LciServer) -> None:
    fake.script(SSE([], done=False), SSE([], done=False))
    with server.client() as client:
        reply = client.post("/v1/responses", json={"input": "x", "tools": CI, "stream": True})
    assert reply.status_code == 502 and reply.json()["error"]["code"] == "upstream_error"
    fake.check()


def test_calls_with_unreadable_arguments_get_no_item(fake: FakeModel, server: LciServer) -> None:
    fake.script(stream(calls=[Call(arguments='{"nope": 1}')]), stream(text="sorry"))
    response = sdk(server).responses.create(model="m", input="x", tools=CI)
    fake.check()
    assert [item.type for item in response.output] == ["message"]
    assert response.usage.x_tools == {"code_interpreter": {"count": 0}}  # type: ignore[union-attr]
