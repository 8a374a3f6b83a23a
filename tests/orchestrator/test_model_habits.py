"""Habits of real small models (seen with Qwen2.5-Coder-1.5B on llama.cpp) and of broken servers,
replayed by the fake model: the loop must end with an answer, honestly, and count what really ran."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from engine.core.manager import SessionManager
from engine.models import Limits, Outcome, SessionSpec
from engine.orchestrator import Orchestrator, UpstreamClient
from engine.orchestrator.tool import CUT_OFF_TEXT, FINAL_INSTRUCTION, NOTHING_WORKED_INSTRUCTION
from engine.session_runner import SessionRunner
from tests.fake_llm import (
    Call,
    FakeLLM,
    dict_call,
    last_tool_text,
    malformed,
    python_block,
    stream,
    tool_messages,
)
from tests.orchestrator.conftest import of_type, run_loop

POWER = "7**77"
VALUE = str(7**77)


def _no_tools(body: dict[str, Any], instruction: str = FINAL_INSTRUCTION) -> None:
    assert "tools" not in body and "tool_choice" not in body, body.keys()
    assert body["messages"][-1] == {"role": "user", "content": instruction}


def _nothing_worked(body: dict[str, Any]) -> None:
    _no_tools(body, NOTHING_WORKED_INSTRUCTION)


async def test_forced_final_round_has_no_tools_and_an_answer(
    llm: FakeLLM, orchestrator: Orchestrator
) -> None:
    # The model repeats itself; the forced final round goes without tools, and when the
    # model still writes a call (cut off at max_tokens, as llama.cpp reports it) the answer is
    # the last tool output, said to be so: never "".
    llm.script(
        stream(calls=[POWER]),
        stream(calls=[POWER]),
        stream(calls=[POWER]),
        stream(calls=[Call(arguments='{"code": "7**7')], finish="length", expect=_no_tools),
    )
    events = await run_loop(orchestrator, max_repeats=2, answer_after_repeat=False)
    llm.check()
    final = events[-1]
    assert final.type == "final" and final.forced == "repeats" and final.fallback
    assert final.text.startswith("[The model did not answer")
    assert VALUE in final.text
    shown = "".join(e.text for e in of_type(events, "text_delta"))
    assert shown == final.text
    assert final.finish_reason == "length" and final.incomplete == "max_tokens"


async def test_empty_reply_after_results_is_answered_from_them(
    llm: FakeLLM, orchestrator: Orchestrator
) -> None:
    llm.script(stream(calls=[POWER]), stream(text=""))
    events = await run_loop(orchestrator)
    llm.check()
    final = events[-1]
    assert final.fallback and VALUE in final.text and "its reply was empty" in final.text
    assert final.finish_reason == "stop"


async def test_alternating_repeats_are_a_loop(llm: FakeLLM, orchestrator: Orchestrator) -> None:
    # A, A, B, B, C, C ... used to run every round, because each new code reset the
    # repeat count. Repeats of any earlier call are refused and counted across rounds.
    llm.script(
        stream(calls=["import datetime"]),
        stream(calls=["import datetime"]),
        stream(calls=["datetime.date(2024, 3, 1).strftime('%A')"]),
        stream(calls=["datetime.date(2024, 3, 1).strftime('%A')"]),
        stream(text="Friday", expect=lambda body: [_no_tools(body), _told_earlier(False)(body)]),
    )
    events = await run_loop(orchestrator, max_repeats=2, answer_after_repeat=False)
    llm.check()
    final = events[-1]
    assert final.text == "Friday" and final.forced == "repeats"
    assert final.rounds == 5 and final.executions == 2
    statuses = [e.status for e in of_type(events, "execution_result")]
    assert statuses == ["executed", "repeated", "executed", "repeated"]


def _told_earlier(earlier: bool) -> Any:
    def check(body: dict[str, Any]) -> None:
        which = "an earlier call" if earlier else "the previous call"
        assert last_tool_text(body).startswith(f"This code is identical to {which}")

    return check


async def test_repeat_of_an_older_call_is_refused(llm: FakeLLM, orchestrator: Orchestrator) -> None:
    llm.script(
        stream(calls=["x = 6 * 7\nx"]),
        stream(calls=["x + 1"]),
        stream(calls=["x = 6*7\nx  # once more"]),
        stream(text="42", expect=_told_earlier(True)),
    )
    events = await run_loop(orchestrator, max_repeats=3)
    llm.check()
    assert [e.status for e in of_type(events, "execution_result")][-1] == "repeated"
    assert events[-1].executions == 2


async def test_code_that_failed_runs_again_once_other_code_worked(
    llm: FakeLLM, orchestrator: Orchestrator
) -> None:
    # It failed for want of an import the model made next; refusing it as a repeat told the
    # model it would fail again, which was no longer true.
    llm.script(
        stream(calls=["print(math.factorial(5))"]),
        stream(calls=["import math"]),
        stream(calls=["print(math.factorial(5))"]),
        stream(text="120"),
    )
    events = await run_loop(orchestrator)
    llm.check()
    results = of_type(events, "execution_result")
    assert [r.status for r in results] == ["executed", "executed", "executed"]
    assert results[-1].output == "stdout:\n\n```\n120\n```"


async def test_failing_code_in_between_does_not_make_a_repeat_new(
    llm: FakeLLM, orchestrator: Orchestrator
) -> None:
    # A, B, A with both failing: nothing that worked ran in between, so A would fail again.
    llm.script(
        stream(calls=["print(undefined_a)"]),
        stream(calls=["print(undefined_b)"]),
        stream(calls=["print(undefined_a)"]),
        stream(text="cannot"),
    )
    events = await run_loop(orchestrator, retry_temperature=None)
    llm.check()
    statuses = [r.status for r in of_type(events, "execution_result")]
    assert statuses == ["executed", "executed", "repeated"]


async def test_same_error_again_and_again_ends_the_loop(
    llm: FakeLLM, orchestrator: Orchestrator
) -> None:
    llm.script(
        stream(calls=["import nosuchmodule_a"]),
        stream(calls=["1/0"]),
        stream(calls=["x = 1\n1/0"]),
        stream(calls=["y = 2\n1/0"]),
        stream(text="It cannot be divided by zero.", expect=_nothing_worked),
    )
    events = await run_loop(orchestrator, max_repeats=2)
    llm.check()
    assert events[-1].forced == "repeats" and events[-1].executions == 4


async def test_failure_budget_ends_the_loop(llm: FakeLLM, orchestrator: Orchestrator) -> None:
    llm.script(
        stream(calls=["1/0"]),
        stream(calls=["[][1]"]),
        stream(calls=["{}['k']"]),
        stream(text="Everything failed.", expect=_nothing_worked),
    )
    events = await run_loop(orchestrator, max_failures=3)
    llm.check()
    assert events[-1].forced == "errors" and events[-1].text == "Everything failed."


async def test_upstream_length_is_reported(llm: FakeLLM, orchestrator: Orchestrator) -> None:
    # A reply cut at max_tokens is not a finished answer.
    llm.script(stream(calls=[POWER]), stream(text="7**77 is 1" + "0" * 20, finish="length"))
    events = await run_loop(orchestrator)
    llm.check()
    final = events[-1]
    assert (final.finish_reason, final.incomplete, final.fallback) == (
        "length",
        "max_tokens",
        False,
    )


async def test_python_dict_call_is_recognised(llm: FakeLLM, orchestrator: Orchestrator) -> None:
    # `{'name': 'code_interpreter', 'arguments': {...}}` in single quotes is a call.
    llm.script(
        stream(text=dict_call("print(7**77)")),
        stream(text="Here: " + dict_call("7**77 % 1000", fenced="python")),
        stream(text="Done."),
    )
    events = await run_loop(orchestrator)
    llm.check()
    assert events[-1].executions == 2 and events[-1].text == "Done."
    results = of_type(events, "execution_result")
    assert [r.status for r in results] == ["executed", "executed"]
    assert VALUE in results[0].output
    assert "'name'" not in "".join(e.text for e in of_type(events, "text_delta"))


async def test_python_blocks_auto(llm: FakeLLM, orchestrator: Orchestrator) -> None:
    # `auto` runs python blocks until the model shows it has native calls.
    llm.script(
        stream(text=python_block("print(7**77)", "Let me compute it:\n", "\nThis prints it.")),
        stream(calls=["len(str(7**77))"]),
        stream(text=python_block("print(7**77)", "You can check it with:\n")),
    )
    events = await run_loop(orchestrator, python_blocks="auto")
    llm.check()
    assert events[-1].executions == 2
    assert events[-1].text == "You can check it with:\n```python\nprint(7**77)\n```"


async def test_tool_choice_required_on_the_first_round(
    llm: FakeLLM, orchestrator: Orchestrator
) -> None:
    # The loop's part of tool_choice: required goes upstream on the first round only.
    llm.script(stream(calls=["1+1"]), stream(text="2"))
    await run_loop(orchestrator, tool_choice="required")
    llm.check()
    assert [r.body["tool_choice"] for r in llm.requests] == ["required", "auto"]


async def test_refused_calls_are_marked_as_not_run(
    llm: FakeLLM, orchestrator: Orchestrator
) -> None:
    # The loop's part: a refused repeat's code_complete says it will not run.
    llm.script(stream(calls=[POWER]), stream(calls=[POWER]), stream(text=VALUE))
    events = await run_loop(orchestrator, max_repeats=3)
    llm.check()
    assert [e.runs for e in of_type(events, "code_complete")] == [True, False]
    assert events[-1].executions == 1


async def test_each_execution_gets_the_session_timeout(
    llm: FakeLLM, upstream: UpstreamClient, manager: SessionManager
) -> None:
    # Without a per-call timeout an execution gets the session's timeout_s, not the
    # whole remaining deadline.
    spec = SessionSpec(limits=Limits(timeout_s=1, memory_mb=256, max_procs=32, disk_mb=32))
    runner = SessionRunner(manager, spec)
    try:
        llm.script(stream(calls=["while True: pass"]), stream(text="It never ends."))
        started = time.monotonic()
        events = await run_loop(Orchestrator(upstream, runner), deadline_s=120)
        took = time.monotonic() - started
    finally:
        await runner.aclose()
    llm.check()
    result = of_type(events, "execution_result")[0]
    assert result.execution.outcome in (Outcome.INTERRUPTED, Outcome.KILLED)
    assert result.execution.limits.timeout_s == 1
    assert events[-1].text == "It never ends." and took < 60


async def test_malformed_stream_data_is_an_upstream_error(
    llm: FakeLLM, orchestrator: Orchestrator
) -> None:
    # The loop's part: not JSON in the stream is a typed error, not a crash.
    llm.script(malformed())
    events = await run_loop(orchestrator)
    llm.check()
    error = events[-1]
    assert error.type == "error" and error.code == "upstream_error" and error.status == 502
    assert "malformed" in error.message


async def test_a_cut_off_call_goes_back_to_the_server_as_json(
    llm: FakeLLM, orchestrator: Orchestrator
) -> None:
    # A call cut off at the token limit is read leniently and runs; the conversation sent with the
    # next round must hold it as valid JSON: llama.cpp's server parses the arguments of earlier
    # calls and answers 500 to every later round otherwise.
    def history_is_json(body: dict[str, Any]) -> None:
        sent = body["messages"][-2]["tool_calls"][0]["function"]["arguments"]
        assert json.loads(sent) == {"code": "print(7**77)"}

    cut = Call(arguments='{"code": "print(7**77)')
    llm.script(stream(calls=[cut], finish="length"), stream(text=VALUE, expect=history_is_json))
    events = await run_loop(orchestrator)
    llm.check()
    final = events[-1]
    assert final.type == "final" and final.text == VALUE and final.executions == 1


# A greedy small model sometimes repeats a digit until the token limit inside its call
# (`sys.set_int_max_str_digits(1000000...`): llama.cpp ends the reply with finish_reason length.
DEGENERATE = Call(arguments='{"code": "import sys\\nsys.set_int_max_str_digits(1000000000000')


async def test_a_call_cut_off_inside_its_code_is_not_run_and_asked_again(
    llm: FakeLLM, orchestrator: Orchestrator
) -> None:
    def asked(temperature: float, seed: int) -> Any:
        def check(body: dict[str, Any]) -> None:
            assert (body["temperature"], body["seed"]) == (temperature, seed)
            # The cut-off call is not in the conversation: it would only invite the same again.
            assert [m["role"] for m in body["messages"]] == ["system", "user"]

        return check

    llm.script(
        stream(calls=[DEGENERATE], finish="length", expect=asked(0.0, 5)),
        stream(calls=[f"print({POWER})"], expect=asked(0.7, 6)),
        stream(text=VALUE, expect=lambda body: _results(body, 1)),
    )
    events = await run_loop(orchestrator, params={"temperature": 0.0, "seed": 5})
    llm.check()
    results = of_type(events, "execution_result")
    assert [r.status for r in results] == ["invalid", "executed"]
    assert results[0].output == CUT_OFF_TEXT and results[0].execution is None
    assert [c.runs for c in of_type(events, "code_complete")] == [False, True]
    final = events[-1]
    assert (final.text, final.executions, final.forced) == (VALUE, 1, None)


def _results(body: dict[str, Any], n: int) -> None:
    assert len(tool_messages(body)) == n


async def test_a_cut_off_call_is_refused_in_the_conversation_when_asking_again_is_off(
    llm: FakeLLM, orchestrator: Orchestrator
) -> None:
    def told(body: dict[str, Any]) -> None:
        assert last_tool_text(body) == CUT_OFF_TEXT

    llm.script(stream(calls=[DEGENERATE], finish="length"), stream(text="?", expect=told))
    events = await run_loop(orchestrator, retry_temperature=None)
    llm.check()
    assert events[-1].executions == 0


async def test_cut_off_calls_count_as_strikes(llm: FakeLLM, orchestrator: Orchestrator) -> None:
    # The model that repeats itself into the token limit every time is steered to an answer.
    llm.script(
        *[stream(calls=[DEGENERATE], finish="length") for _ in range(3)],
        stream(text="I could not compute it.", expect=_no_tools),
    )
    events = await run_loop(orchestrator, max_repeats=3)
    llm.check()
    final = events[-1]
    assert (final.forced, final.executions) == ("repeats", 0)


@pytest.mark.parametrize("worked", [False, True], ids=["nothing_worked", "some_code_worked"])
async def test_the_final_round_asks_not_to_guess_only_when_no_code_worked(
    llm: FakeLLM, orchestrator: Orchestrator, worked: bool
) -> None:
    # Told only to answer from the results, a small model made a number up after three
    # timeouts; with nothing that worked, it is told so. Once code worked, it has a result.
    llm.script(
        *([stream(calls=["x = 6 * 7"])] if worked else []),
        stream(calls=["1 / 0"]),
        stream(calls=["int('x')"]),
        stream(
            text="42" if worked else "It could not be computed.",
            expect=_no_tools if worked else _nothing_worked,
        ),
    )
    events = await run_loop(orchestrator, max_failures=2)
    llm.check()
    assert events[-1].forced == "errors"
