"""The text fallback: calls written in the model's text, end to end and in the scanner alone."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.orchestrator import Orchestrator
from engine.orchestrator.calls import read_code
from engine.orchestrator.textcalls import TextScanner
from tests.fake_llm import FakeLLM, Reply, last_tool_text, stream, tool_messages
from tests.orchestrator.conftest import of_type, run_loop

POWER = "77269364466549865653073473388030061522211723"
FENCED_JSON = (
    "I'll calculate that.\n```json\n"
    '{"name": "code_interpreter", "arguments": {"code": "123**21"}}\n```'
)
TAGGED = 'Computing.\n<tool_call>\n{"name": "code_interpreter", "arguments": {"code": "123**21"}}\n</tool_call>'
XML = (
    "<tool_call>\n<function=code_interpreter>\n<parameter=code>\n123**21\n</parameter>\n"
    "</function>\n</tool_call>"
)
PYTHON = "Let me run this:\n```python\n123**21\n```\n"


def _answer(body: dict[str, Any]) -> Any:
    text = last_tool_text(body)
    assert text == f"execute_result:\n\n```\n{POWER}\n```", text
    (assistant,) = [m for m in body["messages"] if m["role"] == "assistant"]
    assert [c["id"] for c in assistant["tool_calls"]] == [tool_messages(body)[0]["tool_call_id"]]
    assert "```" not in assistant["content"] and "<tool_call>" not in assistant["content"]
    return stream(text=f"It is {POWER}.")


@pytest.mark.parametrize(
    ("text", "before"),
    [(FENCED_JSON, "I'll calculate that.\n"), (TAGGED, "Computing.\n"), (XML, "")],
    ids=["fenced-json", "tagged", "xml"],
)
async def test_call_written_as_text(
    llm: FakeLLM, orchestrator: Orchestrator, text: str, before: str
) -> None:
    llm.script(
        stream(text=text + "\nThe result is 42.", flavor="llamacpp", piece=3), Reply(_answer)
    )
    events = await run_loop(orchestrator)
    llm.check()
    shown = "".join(e.text for e in of_type(events, "text_delta"))
    assert "code_interpreter" not in shown and "42" not in shown  # no markup, no made-up result
    assert shown == before + f"It is {POWER}."
    assert of_type(events, "code_complete")[0].code.strip() == "123**21"
    assert events[-1].text == f"It is {POWER}." and events[-1].executions == 1


async def test_python_block_runs_only_when_allowed(
    llm: FakeLLM, orchestrator: Orchestrator
) -> None:
    llm.script(stream(text=PYTHON))
    events = await run_loop(orchestrator)
    assert events[-1].text == PYTHON and events[-1].executions == 0
    llm.script(stream(text=PYTHON), Reply(_answer))
    events = await run_loop(orchestrator, python_blocks=True)
    llm.check()
    assert events[-1].executions == 1


async def test_text_calls_can_be_switched_off(llm: FakeLLM, orchestrator: Orchestrator) -> None:
    llm.script(stream(text=FENCED_JSON))
    events = await run_loop(orchestrator, text_calls=False)
    llm.check()
    assert events[-1].text == FENCED_JSON and events[-1].executions == 0


# -- the scanner alone ----------------------------------------------------------------------------


def scan(text: str, pieces: list[int] | None = None, **kw: Any) -> tuple[str, TextScanner]:
    scanner = TextScanner(**kw)
    out, start = [], 0
    for size in pieces or [len(text)]:
        out.append(scanner.feed(text[start : start + size]))
        start += size
    out.append(scanner.feed(text[start:]))
    out.append(scanner.finish())
    return "".join(out), scanner


def test_code_block_that_is_not_a_call_is_shown() -> None:
    text = "Use this:\n```python\nprint(1)\n```\nand `x < y`."
    shown, scanner = scan(text)
    assert shown == text and not scanner.calls


def test_unclosed_tool_call_at_end_of_reply() -> None:
    shown, scanner = scan('<tool_call>\n{"name": "code_interpreter", "arguments": {"code": "1+1"}}')
    assert shown == "" and scanner.calls[0].code == "1+1"


def test_tool_call_tag_with_garbage_is_an_invalid_call() -> None:
    shown, scanner = scan("<tool_call>{not json</tool_call>")
    assert shown == "" and scanner.calls[0].code is None and scanner.calls[0].problem


def test_qwen_agent_code_mode() -> None:
    text = '<tool_call>\n{"name": "code_interpreter", "arguments": {"code": ""}}\n<code>\nprint(2)\n</code>\n</tool_call>'
    _, scanner = scan(text)
    assert scanner.calls[0].code == "print(2)"


def test_json_with_raw_newlines_in_code() -> None:
    text = '```json\n{"name": "code_interpreter", "arguments": {"code": "a = 1\nprint(a)"}}\n```'
    _, scanner = scan(text)
    assert scanner.calls[0].code == "a = 1\nprint(a)"


@pytest.mark.parametrize(
    ("arguments", "code"),
    [
        ('{"code": "1+1"}', "1+1"),
        ('"{\\"code\\": \\"1+1\\"}"', "1+1"),  # a JSON string holding the object
        ('{"code": "1+1', "1+1"),  # cut off
        ("print(3)", "print(3)"),  # plain code
        ("```python\nprint(3)\n```", "print(3)\n"),
        ({"code": "x"}, "x"),
        ('{"python": "x"}', "x"),
        ('{"code": ""}', None),
        ('{"code": 3}', None),
        ("[1, 2]", "[1, 2]"),  # not an object: taken as code, as Qwen-Agent does
        ('{"a": 1, "b": 2}', None),
    ],
)
def test_read_code(arguments: Any, code: str | None) -> None:
    assert read_code(arguments)[0] == code


SEGMENTS = st.sampled_from(
    [
        "Hello ",
        "a < b ",
        "`x` ",
        "``",
        "<tool",
        " { ",
        '{"name": "Ada"} ',
        FENCED_JSON,
        "\n```python\nx = 1\n```\n",
        "é😀 ",
    ]
)


@settings(deadline=None)  # timing varies on a busy machine; the property does not
@given(st.lists(SEGMENTS, max_size=6), st.lists(st.integers(1, 9), max_size=40))
def test_any_chunking_gives_the_same_result(segments: list[str], pieces: list[int]) -> None:
    text = "".join(segments)
    whole, ref = scan(text)
    chunked, scanner = scan(text, pieces)
    assert chunked == whole == ref.visible == scanner.visible
    assert [c.code for c in scanner.calls] == [c.code for c in ref.calls]
    if FENCED_JSON not in text:
        assert whole == text
    elif not {"``", "`x` "} & set(segments):  # stray backticks may pair up with the fence
        assert json.dumps("code_interpreter") not in whole


def test_bare_json_reply_is_a_call() -> None:
    text = '\n{\n  "name": "code_interpreter",\n  "arguments": {"code": "print(1)"}\n}\n'
    shown, scanner = scan(text, [1] * len(text))
    assert shown == "" and scanner.calls[0].code == "print(1)"


def test_bare_json_that_is_no_call_is_shown() -> None:
    text = '{"name": "Ada", "born": 1815}'
    shown, scanner = scan(text, [3] * 10)
    assert shown == text and not scanner.calls


def test_python_triple_quotes_inside_json() -> None:
    text = '```json\n{"name": "code_interpreter", "arguments": {"code": """\nx = 2\nprint(x)\n"""}}\n```'
    _, scanner = scan(text)
    assert scanner.calls[0].code == "x = 2\nprint(x)\n"
