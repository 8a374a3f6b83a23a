"""Mending the closing brackets at the end of a call's code (a slip of models writing JSON calls)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.orchestrator import Orchestrator
from engine.orchestrator.brackets import mend_closing_brackets
from tests.fake_llm import FakeLLM, stream
from tests.orchestrator.conftest import of_type, run_loop


@pytest.mark.parametrize(
    ("code", "mended"),
    [
        # what Qwen2.5-Coder-1.5B writes in a fenced JSON call: the JSON's brace in the code
        ("def f(n):\n    return n\nprint(f(27)}", "def f(n):\n    return n\nprint(f(27))"),
        ("print(max(range(3))", "print(max(range(3)))"),  # one closer short
        ("print(1))", "print(1)"),  # one too many
        ('x = {"a": (1, 2}', 'x = {"a": (1, 2)}'),
        ('print("a)"}', 'print("a)")'),  # brackets inside strings do not count
    ],
)
def test_a_slip_at_the_end_is_mended(code: str, mended: str) -> None:
    assert mend_closing_brackets(code) == mended


@pytest.mark.parametrize(
    "code",
    [
        "print(1)",  # compiles: never touched
        "data = [1, 2, 3",  # cut off inside a bracket: not completed
        "print(1 +}",  # the error is not in the brackets
        "print(f(g(h(1}}}",  # more than a slip
        "print(1}  # done",  # not at the very end
        "1 / 0",
        'print("unterminated)',
    ],
)
def test_anything_else_is_left_alone(code: str) -> None:
    assert mend_closing_brackets(code) == code


@given(st.text(alphabet="()[]{}ab1+, \n'\"", max_size=40))
def test_mending_only_ever_makes_code_compile(code: str) -> None:
    mended = mend_closing_brackets(code)
    if mended != code:
        compile(mended, "<test>", "exec")
        stem = code.rstrip().rstrip(")]}")  # only the closers at the end were changed
        assert mended.startswith(stem) and set(mended[len(stem) :]) <= set(")]} \n")


async def test_the_mended_code_runs_and_is_what_the_conversation_records(
    llm: FakeLLM, orchestrator: Orchestrator
) -> None:
    def recorded(body: dict[str, Any]) -> None:
        call = body["messages"][-2]["tool_calls"][0]["function"]
        assert call["arguments"] == '{"code": "print(6 * 7)"}'

    llm.script(stream(calls=["print(6 * 7}"]), stream(text="42", expect=recorded))
    events = await run_loop(orchestrator)
    llm.check()
    (complete,) = of_type(events, "code_complete")
    (result,) = of_type(events, "execution_result")
    assert complete.code == "print(6 * 7)" and result.execution.ok
    assert result.output == "stdout:\n\n```\n42\n```"
