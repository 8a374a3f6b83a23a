"""Upstream failures, malformed calls, the deadline and cancellation."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from engine.models import Outcome
from engine.orchestrator import Orchestrator, UpstreamClient
from engine.orchestrator.events import Event
from engine.session_runner import SessionRunner
from tests.fake_llm import (
    SSE,
    Call,
    FakeLLM,
    HTTPError,
    error_event,
    last_tool_text,
    stream,
    unused_port,
)
from tests.orchestrator.conftest import QUESTION, of_type, run_loop


async def test_connection_refused(runner: SessionRunner) -> None:
    url = f"http://127.0.0.1:{unused_port()}/v1"
    async with UpstreamClient(url, max_retries=1) as client:
        events = await run_loop(Orchestrator(client, runner))
    error = events[-1]
    assert error.type == "error" and error.code == "upstream_error" and error.status is None
    assert f"cannot reach the model server at {url}" in error.message
    assert (error.rounds, error.executions) == (1, 0)


async def test_client_error_is_not_retried(llm: FakeLLM, orchestrator: Orchestrator) -> None:
    body = {
        "error": {
            "message": "model 'nope' not found",
            "type": "invalid_request_error",
            "param": None,
            "code": 404,
        }
    }
    llm.script(HTTPError(404, body))
    events = await run_loop(orchestrator)
    llm.check()
    assert len(llm.requests) == 1
    assert events[-1].type == "error" and events[-1].status == 404
    assert "model 'nope' not found" in events[-1].message


async def test_server_error_is_retried(llm: FakeLLM, orchestrator: Orchestrator) -> None:
    llm.script(HTTPError(500), stream(text="fine now"))
    events = await run_loop(orchestrator)
    llm.check()
    assert len(llm.requests) == 2 and events[-1].text == "fine now"


async def test_server_error_gives_up_after_bounded_retries(
    llm: FakeLLM, orchestrator: Orchestrator
) -> None:
    llm.script(HTTPError(503), HTTPError(503))
    events = await run_loop(orchestrator)
    llm.check()
    assert len(llm.requests) == 2  # the request and max_retries=1 retry
    assert events[-1].type == "error" and events[-1].status == 503


async def test_rate_limit_honours_retry_after(llm: FakeLLM, orchestrator: Orchestrator) -> None:
    llm.script(HTTPError(429, headers={"Retry-After": "1"}), stream(text="after the wait"))
    started = time.monotonic()
    events = await run_loop(orchestrator)
    llm.check()
    assert time.monotonic() - started >= 1.0
    assert events[-1].text == "after the wait"


async def test_rate_limit_too_long_to_wait(llm: FakeLLM, orchestrator: Orchestrator) -> None:
    llm.script(HTTPError(429, headers={"Retry-After": "3600"}))
    events = await run_loop(orchestrator)
    llm.check()
    assert events[-1].type == "error" and events[-1].status == 429
    assert "retry after 3600 s" in events[-1].message


async def test_stream_dropped_before_anything_shown_is_retried(
    llm: FakeLLM, orchestrator: Orchestrator
) -> None:
    dropped = stream(reasoning="thinking", drop_after=1)  # only the role chunk got through
    llm.script(dropped, stream(reasoning="thinking", text="whole"))
    events = await run_loop(orchestrator)
    llm.check()
    assert len(llm.requests) == 2
    assert [e.text for e in of_type(events, "reasoning_delta")] == ["thinkin", "g"]
    assert events[-1].text == "whole"


async def test_stream_dropped_mid_way_is_reported(llm: FakeLLM, orchestrator: Orchestrator) -> None:
    llm.script(stream(reasoning="a long thought", text="partial answer", drop_after=4))
    events = await run_loop(orchestrator)
    llm.check()
    assert len(llm.requests) == 1  # text was already shown: asking again would repeat it
    error = events[-1]
    assert error.type == "error" and error.code == "upstream_error" and error.status == 502
    assert "stream broke off" in error.message


async def test_stream_ending_without_finish_is_reported(
    llm: FakeLLM, orchestrator: Orchestrator
) -> None:
    cut = stream(text="half an answer")
    cut.events = cut.events[:-2]  # no finish chunk, no usage, but a clean end of the body
    llm.script(cut)
    events = await run_loop(orchestrator)
    assert events[-1].type == "error"
    assert "ended before the model finished" in events[-1].message


async def test_error_event_in_stream(llm: FakeLLM, orchestrator: Orchestrator) -> None:
    role_chunk = stream(text="x").events[0]
    llm.script(SSE([role_chunk, error_event()]), SSE([role_chunk, error_event()]))
    events = await run_loop(orchestrator)
    llm.check()
    assert len(llm.requests) == 2  # nothing shown yet: retried once, then reported
    assert events[-1].type == "error" and events[-1].status == 503
    assert "engine overloaded" in events[-1].message


async def test_malformed_arguments(llm: FakeLLM, orchestrator: Orchestrator) -> None:
    def told(body: dict[str, Any]) -> None:
        assert last_tool_text(body).startswith(
            "Error: the arguments of this call could not be read"
        )

    llm.script(
        stream(calls=[Call(arguments='{"code": print(6 * 7)}')]),
        stream(calls=[Call(arguments='{"code": "print(6 * 7)\n')], expect=told),  # cut short
        stream(text="42", expect=lambda body: _assert_in("42", last_tool_text(body))),
    )
    events = await run_loop(orchestrator)
    llm.check()
    invalid, executed = of_type(events, "execution_result")
    assert (invalid.status, invalid.execution, invalid.code) == ("invalid", None, "")
    assert executed.status == "executed" and executed.execution.stdout == "42\n"
    assert events[-1].executions == 1


async def test_unknown_tool_name(llm: FakeLLM, orchestrator: Orchestrator) -> None:
    llm.script(
        stream(calls=[Call(code="1", name="web_search")]),
        stream(
            text="ok", expect=lambda b: _assert_in("no tool named 'web_search'", last_tool_text(b))
        ),
    )
    events = await run_loop(orchestrator)
    llm.check()
    assert of_type(events, "execution_result")[0].status == "invalid"


def _assert_in(part: str, text: str) -> None:
    assert part in text, text


async def test_deadline(llm: FakeLLM, orchestrator: Orchestrator) -> None:
    llm.script(stream(text="slow", delay_s=5))
    started = time.monotonic()
    events = await run_loop(orchestrator, deadline_s=0.5)
    assert time.monotonic() - started < 3
    assert events[-1].type == "error" and events[-1].code == "deadline_exceeded"


async def test_deadline_bounds_an_execution(llm: FakeLLM, orchestrator: Orchestrator) -> None:
    llm.script(stream(calls=["import time\ntime.sleep(30)"]))
    started = time.monotonic()
    events = await run_loop(orchestrator, deadline_s=1.5)
    assert time.monotonic() - started < 8
    result = of_type(events, "execution_result")[0]
    assert result.execution.outcome is Outcome.INTERRUPTED  # given only the time that was left
    assert events[-1].type == "error" and events[-1].code == "deadline_exceeded"


async def test_cancellation_stops_the_execution(
    llm: FakeLLM, orchestrator: Orchestrator, runner: SessionRunner
) -> None:
    llm.script(stream(calls=["import time\ntime.sleep(60)"]))
    seen: list[Event] = []
    executing = asyncio.Event()

    async def consume() -> None:
        async for event in orchestrator.run(QUESTION, conversation_id="conv-c"):
            seen.append(event)
            if event.type == "code_complete":
                executing.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(executing.wait(), 10)
    await asyncio.sleep(0.3)  # the cell is sleeping in the sandbox now
    started = time.monotonic()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()
    # The session is free again at once: the sleeping cell was stopped, not waited for.
    execution = await asyncio.wait_for(runner.execute("conv-c", "'alive'"), 5)
    assert execution.result_text == "'alive'"
    assert time.monotonic() - started < 5
    assert not of_type(seen, "execution_result")
