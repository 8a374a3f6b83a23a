"""Surface B, Chat Completions, against `lci serve` with the real `openai` SDK and raw HTTP."""

from __future__ import annotations

import json
import time
from typing import Any

import openai
import pytest

from engine.orchestrator.tool import TOOL_DEFINITION
from tests.fake_llm import SSE, Call, HTTPError, error_event, stream
from tests.server import checks
from tests.server.helpers import (
    QUESTION,
    FakeModel,
    LciServer,
    covers,
    read_sse,
    sse_events,
    two_executions,
)

MESSAGES = [{"role": "user", "content": QUESTION}]
CI = {"enable_code_interpreter": True, "enable_thinking": True}
REASONING = (
    "The user wants two executions. First, compute 123**23."
    "The result is known. Now divide it by 5."
    "Both results are ready; report them."
)
ANSWER = "123^23 = 1169008215014432917465348578887506800769541157267. Divided by 5: 2.338016430028866e+47."


def sdk(server: LciServer) -> openai.OpenAI:
    return server.openai()


def raw_chunks(server: LciServer, **body: Any) -> list[dict[str, Any]]:
    events = sse_events(
        server, "/v1/chat/completions", {"model": "m", "messages": MESSAGES, "stream": True, **body}
    )
    return checks.chat_stream(events)


@covers(35, 36, 37, 38, 39, 40)
def test_stream_framing_and_content(fake: FakeModel, server: LciServer) -> None:
    fake.script(*two_executions())
    chunks = raw_chunks(server, stream_options={"include_usage": True}, **CI)
    fake.check()
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    reasoning = "".join(d.get("reasoning_content") or "" for d in deltas)
    content = "".join(d.get("content") or "" for d in deltas)
    assert reasoning == REASONING and content == ANSWER  # 38: every round, in order
    assert all(d.get("content") is None for d in deltas if d.get("reasoning_content"))  # 37
    for text in (reasoning, content):  # 38: no code, markup or sandbox output
        assert "**23" not in text.replace("123**23.", "") and "<tool_call>" not in text
        assert "1169008215014432917465348578887506800769541157267 / 5" not in text
    *body, last = chunks
    assert last["choices"] == [] and all(c["usage"] is None for c in body)  # 40
    usage = last["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]) == (
        3595,
        185,
        3780,
    )
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 85
    assert body[-1]["choices"][0]["finish_reason"] == "stop"  # 40: usage after the finish chunk


@covers(40)
def test_no_usage_chunk_unless_asked(fake: FakeModel, server: LciServer) -> None:
    fake.script(stream(calls=["1+1"]), stream(text="2"))
    chunks = raw_chunks(server, **CI)
    fake.check()
    assert all(c["choices"] and c["usage"] is None for c in chunks)


@covers(4, 5, 8)
def test_what_the_model_server_is_sent(fake: FakeModel, server: LciServer) -> None:
    fake.script(*two_executions())
    raw_chunks(server, temperature=0.3, **CI)
    fake.check()
    first, second, third = fake.chat_requests()
    for request in (first, second, third):
        assert "enable_code_interpreter" not in request  # 4
        assert request["tools"] == [TOOL_DEFINITION]  # 4: exactly the one tool of section 6.1
        assert request["temperature"] == 0.3
        assert request["chat_template_kwargs"] == {"enable_thinking": True}
    assistant, tool = second["messages"][-2:]  # 5
    assert assistant["role"] == "assistant" and assistant["reasoning_content"].startswith(
        "The user"
    )
    (call,) = assistant["tool_calls"]
    assert call["function"]["name"] == "code_interpreter"
    assert tool == {
        "role": "tool",
        "tool_call_id": call["id"],
        "content": "execute_result:\n\n```\n1169008215014432917465348578887506800769541157267\n```",
    }
    assert third["messages"][: len(second["messages"])] == second["messages"]


@covers(41)
def test_the_product_sample_runs_unmodified(
    fake: FakeModel, server: LciServer, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.script(*two_executions())
    client = sdk(server)
    completion = client.chat.completions.create(
        model="qwen3-max",
        messages=MESSAGES,  # type: ignore[arg-type]
        extra_body={"enable_code_interpreter": True, "enable_thinking": True},
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in completion:
        if not chunk.choices:
            print("\nUsage:", chunk.usage)
        else:
            delta = chunk.choices[0].delta
            if hasattr(delta, "reasoning_content") and delta.reasoning_content is not None:
                print(delta.reasoning_content, end="", flush=True)
            else:
                print(delta.content, end="", flush=True)
    fake.check()
    out = capsys.readouterr().out
    assert REASONING in out and ANSWER in out
    assert "reasoning_tokens=85" in out


@covers(42)
def test_non_streaming(fake: FakeModel, server: LciServer) -> None:
    fake.script(*two_executions())
    completion = sdk(server).chat.completions.create(
        model="m",
        messages=MESSAGES,
        extra_body=CI,  # type: ignore[arg-type]
    )
    fake.check()
    assert completion.object == "chat.completion"
    message = completion.choices[0].message
    assert message.content == ANSWER
    assert message.reasoning_content == REASONING  # type: ignore[attr-defined]
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.total_tokens == 3780


@covers(42, 2)
def test_strict_switches(fake: FakeModel, strict_server: LciServer) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(strict_server).chat.completions.create(
            model="m",
            messages=MESSAGES,
            extra_body=CI,  # type: ignore[arg-type]
        )
    assert caught.value.code == "invalid_parameter_error"
    assert "only support stream mode" in caught.value.message
    # force_thinking: thinking switched off is turned back on rather than refused
    fake.script(stream(text="ok"))
    body = {**CI, "enable_thinking": False}
    chunks = raw_chunks(strict_server, **body)
    fake.check()
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert fake.chat_requests()[0]["chat_template_kwargs"] == {"enable_thinking": True}


@covers(1, 43)
def test_requests_that_break_the_rules(fake: FakeModel, server: LciServer) -> None:
    # Thinking switched off is refused only by a server that requires it (test_server_options).
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    cases = [({**CI, "tools": [tool]}, "tools", "cannot be used together")]
    with server.client() as client:
        for extra, param, text in cases:
            for stream_it in (True, False):
                body = {"model": "m", "messages": MESSAGES, "stream": stream_it, **extra}
                reply = client.post("/v1/chat/completions", json=body)
                assert reply.status_code == 400
                data = reply.json()  # 43
                assert data["id"].startswith("chatcmpl-") and data["request_id"]
                error = data["error"]
                assert error["code"] == "invalid_parameter_error"
                assert error["type"] == "invalid_request_error"
                assert error["param"] == param and text in error["message"]
    assert fake.requests == []  # 1: refused before any backend call


@covers(3)
def test_without_the_flag_requests_are_forwarded(fake: FakeModel, server: LciServer) -> None:
    fake.script(stream(reasoning="hmm", text="plain answer"))
    body = {
        "model": "m",
        "messages": MESSAGES,
        "stream": True,
        "temperature": 0.1,
        "vendor_field": {"kept": True},
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
    }
    events = sse_events(server, "/v1/chat/completions", body)
    (sent,) = fake.chat_requests()
    assert sent == body  # unchanged: no tool injected, nothing dropped
    chunks = [e.json() for e in events if e.fields and e.data != "[DONE]"]
    assert events[-1].data == "[DONE]"
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert "".join(d.get("reasoning_content") or "" for d in deltas) == "hmm"  # normalized
    assert all("reasoning" not in d for d in deltas)
    assert "".join(d.get("content") or "" for d in deltas) == "plain answer"
    # unstreamed, through the SDK
    completion = {
        "id": "chatcmpl-x",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "hi", "reasoning": "why"},
                "finish_reason": "stop",
            }
        ],
    }
    fake.script(HTTPError(200, completion))
    reply = sdk(server).chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]
    assert reply.choices[0].message.content == "hi"
    assert reply.choices[0].message.reasoning_content == "why"  # type: ignore[attr-defined]
    assert "enable_code_interpreter" not in fake.chat_requests()[-1]
    fake.check()


@covers(13, 43)
def test_backend_errors_keep_their_status_with_string_codes(
    fake: FakeModel, server: LciServer
) -> None:
    vllm_error = {
        "error": {
            "message": "bad temperature",
            "type": "BadRequestError",
            "param": None,
            "code": 400,
        }
    }
    fake.script(HTTPError(400, vllm_error), HTTPError(400, vllm_error))
    with server.client() as client:
        for extra in ({}, CI):  # forwarded, and through the loop
            body = {"model": "m", "messages": MESSAGES, "stream": True, **extra}
            reply = client.post("/v1/chat/completions", json=body)
            assert reply.status_code == 400
            error = reply.json()["error"]
            assert isinstance(error["code"], str) and "bad temperature" in error["message"]
    fake.check()


@covers(13)
def test_unreachable_model_server_is_502(fake: FakeModel, server: LciServer) -> None:
    fake.script(*[HTTPError(503, headers={"retry-after-ms": "10"})] * 3)
    with pytest.raises(openai.InternalServerError) as caught:
        sdk(server).chat.completions.create(model="m", messages=MESSAGES, extra_body=CI)  # type: ignore[arg-type]
    assert caught.value.status_code == 502
    fake.check()


def test_error_in_the_middle_of_a_stream(fake: FakeModel, server: LciServer) -> None:
    broken = stream(reasoning="Working on it, then the server dies.", calls=["1+1"], drop_after=4)
    fake.script(broken)  # something was shown already, so the round is not retried
    events = sse_events(
        server, "/v1/chat/completions", {"messages": MESSAGES, "stream": True, **CI}
    )
    datas = [e.data for e in events if e.fields]
    assert datas[-1] == "[DONE]"
    assert '"error"' in datas[-2] and '"code":"upstream_error"' in datas[-2]
    fake.script(broken)
    with pytest.raises(openai.APIError):
        for _ in sdk(server).chat.completions.create(
            model="m",
            messages=MESSAGES,
            stream=True,
            extra_body=CI,  # type: ignore[arg-type]
        ):
            pass
    forwarded = SSE([{"choices": [{"index": 0, "delta": {"content": "a"}}]}, error_event()])
    fake.script(forwarded)
    events = sse_events(server, "/v1/chat/completions", {"messages": MESSAGES, "stream": True})
    error = next(e.json() for e in events if '"error"' in e.data)
    assert error["error"]["code"] == "503"  # vLLM's integer code, passed on as a string
    fake.check()


def test_a_slow_reader_still_gets_the_whole_stream(fake: FakeModel, server: LciServer) -> None:
    """The loop outpaces a client that reads slowly: nothing is lost, the end included."""
    fake.script(stream(text="x" * 400, piece=1))
    body = {"model": "m", "messages": MESSAGES, "stream": True, **CI}
    with (
        server.client() as client,
        client.stream("POST", "/v1/chat/completions", json=body) as reply,
    ):
        time.sleep(1.0)  # every chunk is produced before the first is read
        events = [e for e in read_sse(reply) if e.fields]
    fake.check()
    assert events[-1].data == "[DONE]"
    text = "".join(
        (e.json()["choices"] or [{"delta": {}}])[0]["delta"].get("content") or ""
        for e in events[:-1]
    )
    assert text == "x" * 400


def test_dashscope_compatible_mode_paths(fake: FakeModel, server: LciServer) -> None:
    """The paths DashScope's compatible mode uses lead to the same surfaces."""
    fake.script(stream(calls=["1+1"]), stream(text="2"))
    chunks = checks.chat_stream(
        sse_events(
            server,
            "/compatible-mode/v1/chat/completions",
            {"model": "m", "messages": MESSAGES, "stream": True, **CI},
        )
    )
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    fake.script(stream(calls=["1+1"]), stream(text="2"))
    with server.client() as client:
        reply = client.post(
            "/api/v2/apps/protocols/compatible-mode/v1/responses",
            json={"model": "m", "input": "x", "tools": [{"type": "code_interpreter"}]},
        )
    assert reply.json()["usage"]["x_tools"] == {"code_interpreter": {"count": 1}}
    fake.check()


def test_enable_shell_offers_the_shell_in_the_codes_session(
    fake: FakeModel, server: LciServer
) -> None:
    shell = Call(name="shell", arguments=json.dumps({"commands": ["cat from_code.txt"]}))
    fake.script(
        stream(calls=["open('from_code.txt', 'w').write('written by code')"]),
        stream(calls=[shell]),
        stream(text="The shell read it."),
    )
    completion = server.openai().chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "x"}],
        extra_body={"enable_code_interpreter": True, "enable_shell": True},
    )
    fake.check()
    assert completion.choices[0].message.content == "The shell read it."
    requests = fake.chat_requests()
    assert [t["function"]["name"] for t in requests[0]["tools"]] == ["code_interpreter", "shell"]
    fed_back = requests[2]["messages"][-1]["content"]
    assert "written by code" in fed_back and "exit code: 0" in fed_back
