"""The tool loop end to end: scripted model on a real HTTP server, code run by the real subprocess
backend."""

from __future__ import annotations

import re
from typing import Any

import pytest

from engine.models import Outcome
from engine.orchestrator import Orchestrator
from engine.orchestrator.tool import DEFAULT_SYSTEM_PROMPT, FINAL_INSTRUCTION, TOOL_DEFINITION
from tests.fake_llm import Call, FakeLLM, Flavor, Reply, last_tool_text, stream, tool_messages
from tests.orchestrator.conftest import QUESTION, of_type, run_loop

POWER = "77269364466549865653073473388030061522211723"


def answer_with_result(body: dict[str, Any]) -> Any:
    """The scripted model's second turn: it reads the value the sandbox returned."""
    value = re.search(r"```\n(.*?)\n```", last_tool_text(body), re.DOTALL)
    assert value is not None, last_tool_text(body)
    return stream(text=f"123 to the power 21 is {value.group(1).strip()}.")


async def test_power_question(llm: FakeLLM, orchestrator: Orchestrator) -> None:
    llm.script(
        stream(reasoning="I should compute 123**21.", calls=[Call(code="123**21", id="call_a1")]),
        Reply(answer_with_result),
    )
    events = await run_loop(orchestrator)
    llm.check()
    final = events[-1]
    assert final.type == "final"
    assert final.text == f"123 to the power 21 is {POWER}."
    assert (final.rounds, final.executions, final.finish_reason) == (2, 1, "stop")
    (result,) = of_type(events, "execution_result")
    assert result.execution.outcome is Outcome.COMPLETED
    assert result.execution.result_text == POWER
    # What the model server received, round by round.
    first, second = (r.body for r in llm.requests)
    assert first["tools"] == [TOOL_DEFINITION] and first["tool_choice"] == "auto"
    assert first["stream"] is True and first["stream_options"] == {"include_usage": True}
    assert first["messages"] == [{"role": "system", "content": DEFAULT_SYSTEM_PROMPT}, *QUESTION]
    assert second["messages"][:2] == first["messages"]
    assistant, tool = second["messages"][2:]
    assert assistant["tool_calls"] == [
        {
            "id": "call_a1",
            "type": "function",
            "function": {"name": "code_interpreter", "arguments": '{"code": "123**21"}'},
        }
    ]
    assert assistant["reasoning_content"] == "I should compute 123**21."
    assert tool == {
        "role": "tool",
        "tool_call_id": "call_a1",
        "content": f"execute_result:\n\n```\n{POWER}\n```",
    }


async def test_second_cell_uses_variable_of_first(llm: FakeLLM, orchestrator: Orchestrator) -> None:
    def third(body: dict[str, Any]) -> Any:
        tools = tool_messages(body)
        assert [t["tool_call_id"] for t in tools] == ["call_1", "call_2"]
        assert "1169008215014432917465348578887506800769541157267" in tools[0]["content"]
        return stream(text="Done: " + last_tool_text(body).split("```")[1].strip())

    llm.script(
        stream(calls=[Call(code="x = 123**23\nprint(x)", id="call_1")], flavor="ollama"),
        stream(calls=[Call(code="x // 5", id="call_2")], flavor="llamacpp"),
        Reply(third),
    )
    events = await run_loop(orchestrator)
    llm.check()
    assert events[-1].text == "Done: 233801643002886583493069715777501360153908231453"
    first, second = of_type(events, "execution_result")
    assert first.execution.stdout.strip() == "1169008215014432917465348578887506800769541157267"
    assert second.execution.result_text == "233801643002886583493069715777501360153908231453"
    assert events[-1].executions == 2


async def test_model_fixes_failing_code(llm: FakeLLM, orchestrator: Orchestrator) -> None:
    def fix(body: dict[str, Any]) -> Any:
        text = last_tool_text(body)
        assert text.startswith("stdout:\n\n```\nstart\n```\n\nerror:\n\n```\n"), text
        assert "Traceback (most recent call last)" in text and "print(undefined_name)" in text
        assert "NameError: name 'undefined_name' is not defined" in text
        return stream(calls=["undefined_name = 41\nundefined_name + 1"])

    llm.script(
        stream(calls=["print('start')\nprint(undefined_name)"]),
        Reply(fix),
        Reply(lambda body: stream(text="It is " + last_tool_text(body).split("```")[1].strip())),
    )
    events = await run_loop(orchestrator)
    llm.check()
    failed, fixed = of_type(events, "execution_result")
    assert failed.execution.outcome is Outcome.ERROR and failed.execution.error.name == "NameError"
    assert fixed.execution.outcome is Outcome.COMPLETED
    assert events[-1].text == "It is 42" and events[-1].executions == 2


async def test_timeout_is_reported_and_loop_goes_on(
    llm: FakeLLM, orchestrator: Orchestrator
) -> None:
    def after_timeout(body: dict[str, Any]) -> Any:
        text = last_tool_text(body)
        assert "Timeout: Code execution exceeded the time limit of 1 s and was interrupted" in text
        assert "Variables defined before the interruption are kept" in text
        return stream(calls=["n"])

    llm.script(
        stream(calls=["n = 7\nwhile True:\n    pass"]),
        Reply(after_timeout),
        stream(text="The loop never ends; n was 7."),
    )
    events = await run_loop(orchestrator, exec_timeout_s=1.0)
    llm.check()
    timed_out, kept = of_type(events, "execution_result")
    assert timed_out.execution.outcome is Outcome.INTERRUPTED
    assert kept.execution.result_text == "7"
    assert events[-1].type == "final" and events[-1].executions == 2


async def test_lost_state_is_reported(llm: FakeLLM, orchestrator: Orchestrator) -> None:
    stubborn = "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\ntime.sleep(60)"

    def after_kill(body: dict[str, Any]) -> Any:
        text = last_tool_text(body)
        assert (
            "was stopped. The code is too slow" in text and "The interpreter was restarted" in text
        )
        assert "variables, imports and definitions from earlier calls are lost" in text
        return stream(calls=["'n' in globals()"])

    llm.script(
        stream(calls=["n = 7"]),
        stream(calls=[stubborn]),
        Reply(after_kill),
        stream(text="State was lost."),
    )
    events = await run_loop(orchestrator, exec_timeout_s=1.0)
    llm.check()
    outcomes = [r.execution.outcome for r in of_type(events, "execution_result")]
    assert outcomes == [Outcome.COMPLETED, Outcome.KILLED, Outcome.COMPLETED]
    assert of_type(events, "execution_result")[-1].execution.result_text == "False"


async def test_two_calls_in_one_round(llm: FakeLLM, orchestrator: Orchestrator) -> None:
    def check(body: dict[str, Any]) -> None:
        assistant = body["messages"][-3]
        assert [c["id"] for c in assistant["tool_calls"]] == ["call_x", "call_y"]
        tools = tool_messages(body)
        assert [t["tool_call_id"] for t in tools] == ["call_x", "call_y"]
        assert [t["content"] for t in tools] == [
            "execute_result:\n\n```\n2\n```",
            "execute_result:\n\n```\n20\n```",
        ]

    llm.script(
        stream(calls=[Call(code="a = 2\na", id="call_x"), Call(code="a * 10", id="call_y")]),
        stream(text="2 and 20", expect=check),
    )
    events = await run_loop(orchestrator)
    llm.check()
    assert [e.call_id for e in of_type(events, "code_start")] == ["call_x", "call_y"]
    assert events[-1].executions == 2


@pytest.mark.parametrize("flavor", ["vllm", "vllm-legacy", "vllm-both", "llamacpp", "ollama"])
async def test_server_flavors_are_read_alike(
    llm: FakeLLM, orchestrator: Orchestrator, flavor: Flavor
) -> None:
    code = 'total = sum(range(10))\nprint("total", total)'
    reasoning = "Sum the numbers 0..9 with Python."

    def check(body: dict[str, Any]) -> None:
        assistant = body["messages"][-2]
        assert assistant["reasoning_content"] == reasoning
        if flavor in ("vllm", "ollama"):
            assert assistant["reasoning"] == reasoning  # what Ollama reads
        assert last_tool_text(body) == "stdout:\n\n```\ntotal 45\n```"

    llm.script(
        stream(reasoning=reasoning, calls=[code], flavor=flavor, usage=(50, 10, 4), piece=3),
        stream(reasoning="Got it.", text="45", flavor=flavor, usage=(80, 6, 2), expect=check),
    )
    events = await run_loop(orchestrator)
    llm.check()
    assert "".join(e.text for e in of_type(events, "reasoning_delta")) == reasoning + "Got it."
    assert of_type(events, "code_complete")[0].code == code
    usage = events[-1].usage
    assert (usage.input_tokens, usage.output_tokens) == (130, 16)
    assert usage.total_tokens == 146
    assert usage.reasoning_tokens == (0 if flavor == "ollama" else 6)
    totals = [e.total.total_tokens for e in of_type(events, "usage")]
    assert totals == sorted(totals)


async def test_max_rounds_ends_with_a_final_call(llm: FakeLLM, orchestrator: Orchestrator) -> None:
    def final_call(body: dict[str, Any]) -> None:
        # Sent without tools (a small model given tool_choice none still writes a call) and with
        # an explicit request for the answer.
        assert "tools" not in body and "tool_choice" not in body
        assert body["messages"][-1] == {"role": "user", "content": FINAL_INSTRUCTION}

    llm.script(
        stream(calls=["1 + 1"]),
        stream(calls=["2 + 2"]),
        stream(text="I keep computing; 4 is the last result.", expect=final_call),
    )
    events = await run_loop(orchestrator, max_rounds=3)
    llm.check()
    assert [r.body.get("tool_choice") for r in llm.requests] == ["auto", "auto", None]
    assert of_type(events, "round_start")[-1].final_call
    assert events[-1].text == "I keep computing; 4 is the last result."
    assert (events[-1].rounds, events[-1].executions) == (3, 2)


async def test_max_rounds_stop(llm: FakeLLM, orchestrator: Orchestrator) -> None:
    llm.script(stream(calls=["1 + 1"]), stream(text="more: ", calls=["2 + 2"]))
    events = await run_loop(orchestrator, max_rounds=2, on_max_rounds="stop")
    llm.check()
    final = events[-1]
    assert (final.finish_reason, final.rounds, final.executions) == ("length", 2, 1)
    assert final.text == "more: "
    assert len(of_type(events, "code_start")) == 1  # the call of the last round is not announced


async def test_repeated_call_is_not_run_again(llm: FakeLLM, orchestrator: Orchestrator) -> None:
    def told(body: dict[str, Any]) -> None:
        text = last_tool_text(body)
        assert text.startswith("This code is identical to the previous call")
        assert f"```\n{POWER}\n```" in text

    llm.script(
        stream(calls=["123**21"]),
        stream(calls=["123**21"]),
        stream(calls=["print(123 ** 21)  # again"], expect=told),
        stream(text=POWER, expect=lambda body: _assert_tool_choice(body, "auto")),
    )
    events = await run_loop(orchestrator, max_repeats=3, answer_after_repeat=False)
    llm.check()
    statuses = [r.status for r in of_type(events, "execution_result")]
    # Whitespace, a comment and print() around the expression do not make it a different call.
    assert statuses == ["executed", "repeated", "repeated"]
    assert events[-1].text == POWER


async def test_repeating_model_is_made_to_answer(llm: FakeLLM, orchestrator: Orchestrator) -> None:
    llm.script(
        stream(calls=["123**21"]),
        stream(calls=["123**21"]),
        stream(calls=["123**21"]),
        stream(text=POWER, expect=lambda body: _assert_tool_choice(body, None)),
    )
    events = await run_loop(orchestrator, max_repeats=2, answer_after_repeat=False)
    llm.check()
    assert [r.status for r in of_type(events, "execution_result")] == [
        "executed",
        "repeated",
        "repeated",
    ]
    assert events[-1].type == "final" and events[-1].executions == 1


async def test_repeat_of_a_call_that_worked_asks_for_the_answer_at_once(
    llm: FakeLLM, orchestrator: Orchestrator
) -> None:
    # A small model told "use this result" after a repeat went on to run 7**78 and answered that.
    def asked_for_the_answer(body: dict[str, Any]) -> None:
        assert "tools" not in body and body["messages"][-1]["role"] == "user"
        assert body["messages"][-2]["content"].startswith("This code is identical")

    llm.script(
        stream(calls=["123**21"]),
        stream(calls=["123**21"]),
        stream(text=POWER, expect=asked_for_the_answer),
    )
    events = await run_loop(orchestrator)
    llm.check()
    statuses = [r.status for r in of_type(events, "execution_result")]
    assert statuses == ["executed", "repeated"]
    final = events[-1]
    assert (final.text, final.forced, final.executions, final.rounds) == (POWER, "repeats", 1, 3)


async def test_a_round_that_repeats_failing_code_is_asked_again(
    llm: FakeLLM, orchestrator: Orchestrator
) -> None:
    # At temperature 0 a small model sends the same failing code however it is told; asked again
    # without the repeat in the conversation and less greedily, it often writes other code.
    def asked(temperature: float, seed: int, results: int) -> Any:
        def check(body: dict[str, Any]) -> None:
            assert (body["temperature"], body["seed"]) == (temperature, seed)
            assert len(tool_messages(body)) == results

        return check

    llm.script(
        stream(calls=["1 / 0"], expect=asked(0.0, 5, 0)),
        stream(calls=["1 / 0"], expect=asked(0.0, 5, 1)),
        stream(calls=["1 / 0"], expect=asked(0.7, 6, 1)),  # the repeat is not in the conversation
        stream(calls=["1 / 1"], expect=asked(0.7, 7, 1)),
        stream(text="1.0", expect=asked(0.0, 5, 2)),
    )
    events = await run_loop(orchestrator, params={"temperature": 0.0, "seed": 5})
    llm.check()
    statuses = [r.status for r in of_type(events, "execution_result")]
    assert statuses == ["executed", "repeated", "repeated", "executed"]
    assert (events[-1].text, events[-1].executions, events[-1].forced) == ("1.0", 2, None)


async def test_asking_again_can_be_turned_off(llm: FakeLLM, orchestrator: Orchestrator) -> None:
    def kept(body: dict[str, Any]) -> None:
        assert body["temperature"] == 0.2 and "seed" not in body
        assert last_tool_text(body).startswith("This code is identical to the previous call")

    llm.script(stream(calls=["1 / 0"]), stream(calls=["1 / 0"]), stream(text="no", expect=kept))
    await run_loop(orchestrator, params={"temperature": 0.2}, retry_temperature=None)
    llm.check()


def _assert_tool_choice(body: dict[str, Any], choice: str | None) -> None:
    assert body.get("tool_choice") == choice


async def test_own_system_prompt_is_kept(llm: FakeLLM, orchestrator: Orchestrator) -> None:
    messages = [{"role": "system", "content": "Answer in French."}, *QUESTION]
    llm.script(stream(text="Je ne sais pas."))
    await run_loop(orchestrator, messages)
    llm.check()
    assert llm.requests[0].body["messages"] == messages


async def test_output_budget(llm: FakeLLM, orchestrator: Orchestrator) -> None:
    def check(body: dict[str, Any]) -> None:
        text = last_tool_text(body)
        assert len(text.encode()) <= 1000
        assert "bytes of output omitted" in text
        assert text.startswith("stdout:\n\n```\nHEAD") and text.endswith("TAIL\n```")

    llm.script(
        stream(calls=["print('HEAD' + 'x' * 100_000 + 'TAIL')"]),
        stream(text="long", expect=check),
    )
    await run_loop(orchestrator, result_budget_bytes=1000)
    llm.check()


async def test_images(llm: FakeLLM, orchestrator: Orchestrator) -> None:
    plot = (
        "import matplotlib.pyplot as plt\n"
        "plt.figure(figsize=(2, 1), dpi=50)\nplt.plot([1, 2, 3])\nplt.show()"
    )

    def placeholder(body: dict[str, Any]) -> None:
        text = last_tool_text(body)
        # the figure's chart, read in the sandbox, tells the model what it shows
        image = r"\[image fig-001: \d+x\d+ PNG, shown to the user, not to you\]"
        assert re.fullmatch(image + r"\n\[chart: line; series: Line 0\]", text), text

    def parts(body: dict[str, Any]) -> None:
        content = tool_messages(body)[-1]["content"]
        assert content[0]["type"] == "text" and "fig-001" in content[0]["text"]
        assert content[1]["image_url"]["url"].startswith("data:image/png;base64,iVBOR")

    llm.script(stream(calls=[plot]), stream(text="a line", expect=placeholder))
    events = await run_loop(orchestrator)
    assert of_type(events, "execution_result")[0].execution.displays
    llm.script(stream(calls=[plot + "\n"]), stream(text="a line", expect=parts))
    await run_loop(orchestrator, images="parts")
    llm.check()


async def test_call_in_the_final_call_round_is_not_run(
    llm: FakeLLM, orchestrator: Orchestrator
) -> None:
    fenced = '```json\n{"name": "code_interpreter", "arguments": {"code": "3 + 3"}}\n```'
    llm.script(stream(calls=["1 + 1"]), stream(text="Still: " + fenced))
    events = await run_loop(orchestrator, max_rounds=2)
    llm.check()
    final = events[-1]
    # The call is not run; the answer says so and quotes the last result instead.
    assert final.text.startswith("Still: \n\n[The model did not answer: it asked to run more code")
    assert final.text.endswith("execute_result:\n\n```\n2\n```")
    assert (final.finish_reason, final.fallback, final.executions) == ("stop", True, 1)
    shown = "".join(e.text for e in of_type(events, "text_delta"))
    assert "code_interpreter" not in shown and shown == final.text


async def test_repeating_a_failed_call(llm: FakeLLM, orchestrator: Orchestrator) -> None:
    def told(body: dict[str, Any]) -> None:
        text = last_tool_text(body)
        assert text.startswith("This code is identical to the previous call, which failed")
        assert "ZeroDivisionError" in text and text.endswith(
            "Fix the code before calling the tool again."
        )

    llm.script(stream(calls=["1 / 0"]), stream(calls=["1 / 0"]), stream(text="oops", expect=told))
    events = await run_loop(orchestrator, retry_temperature=None)
    llm.check()
    assert [r.status for r in of_type(events, "execution_result")] == ["executed", "repeated"]
