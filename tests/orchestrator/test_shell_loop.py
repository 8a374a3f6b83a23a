"""The loop with the shell tool: a scripted model runs commands through the real SessionRunner in
the conversation's session (beside its code), alone or with the code interpreter; the deadline
kills a command that outlives it; calls lci cannot run are answered without running anything."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from engine.orchestrator import Orchestrator, UpstreamClient
from engine.orchestrator.shell import cap_output, read_shell_call
from engine.session_runner import SessionRunner
from tests.fake_llm import Call, FakeLLM, last_tool_text, stream
from tests.orchestrator.conftest import of_type, run_loop


@pytest.fixture
def orchestrator(upstream: UpstreamClient, runner: SessionRunner) -> Orchestrator:
    return Orchestrator(upstream, runner, model="fake-model", shell=runner)


def shell(*commands: str, **extra: Any) -> Call:
    return Call(name="shell", arguments=json.dumps({"commands": list(commands), **extra}))


def tool_names(body: dict[str, Any]) -> list[str]:
    return [tool["function"]["name"] for tool in body.get("tools") or []]


async def test_shell_and_code_run_in_one_session(llm: FakeLLM, orchestrator: Orchestrator) -> None:
    llm.script(
        stream(calls=["open('a.txt', 'w').write('from code')"]),
        stream(calls=[shell("cat a.txt", "exit 4")]),
        stream(text="done"),
    )
    events = await run_loop(orchestrator, shell=True)
    llm.check()
    (call,) = of_type(events, "shell_call")
    done = of_type(events, "shell_command_done")
    (result,) = of_type(events, "shell_result")
    assert call.commands == ["cat a.txt", "exit 4"] and call.runs
    assert [d.index for d in done] == [0, 1]
    assert result.outputs[0].stdout == "from code" and result.outputs[1].exit_code == 4
    assert tool_names(llm.requests[0].body) == ["code_interpreter", "shell"]
    assert "shell" in llm.requests[0].body["messages"][0]["content"]  # the prompt says so
    text = last_tool_text(llm.requests[2].body)
    assert "$ cat a.txt" in text and "from code" in text and "exit code: 4" in text


async def test_shell_alone_refuses_code(llm: FakeLLM, orchestrator: Orchestrator) -> None:
    llm.script(
        stream(calls=["print(1)"]), stream(calls=[shell("echo $((6*7))")]), stream(text="42")
    )
    events = await run_loop(orchestrator, shell=True, code_interpreter=False)
    llm.check()
    assert of_type(events, "code_start") == of_type(events, "execution_result") == []
    refused, ran = of_type(events, "shell_result")
    assert refused.status == "invalid" and "no tool named 'code_interpreter'" in refused.output
    assert ran.outputs[0].stdout == "42\n"
    assert tool_names(llm.requests[0].body) == ["shell"]
    assert "code interpreter" not in llm.requests[0].body["messages"][0]["content"].lower()


async def test_unreadable_arguments_run_nothing(llm: FakeLLM, orchestrator: Orchestrator) -> None:
    llm.script(stream(calls=[Call(name="shell", arguments='{"commands": 5}')]), stream(text="ok"))
    events = await run_loop(orchestrator, shell=True)
    llm.check()
    (call,) = of_type(events, "shell_call")
    (result,) = of_type(events, "shell_result")
    assert (
        not call.runs and result.status == "invalid" and of_type(events, "shell_command_done") == []
    )
    assert '"commands"' in last_tool_text(llm.requests[1].body)


async def test_a_shell_call_written_in_text_runs(llm: FakeLLM, orchestrator: Orchestrator) -> None:
    tagged = (
        '<tool_call>\n{"name": "shell", "arguments": {"commands": ["echo tagged"]}}\n</tool_call>'
    )
    llm.script(stream(text=tagged), stream(text="ok"))
    events = await run_loop(orchestrator, shell=True)
    llm.check()
    (result,) = of_type(events, "shell_result")
    assert result.outputs[0].stdout == "tagged\n"


async def test_the_deadline_kills_a_running_command(
    llm: FakeLLM, orchestrator: Orchestrator, runner: SessionRunner
) -> None:
    llm.script(stream(calls=[shell("sleep 60")]))
    started = time.monotonic()
    events = await run_loop(orchestrator, shell=True, deadline_s=2)
    assert events[-1].type == "error" and events[-1].code == "deadline_exceeded"
    assert time.monotonic() - started < 15
    session = await runner.session("conv-1")
    assert session.commands.list() == []  # killed, not left running


async def test_without_a_command_runner_no_shell_is_offered(
    llm: FakeLLM, upstream: UpstreamClient, runner: SessionRunner
) -> None:
    llm.script(stream(text="plain"))
    await run_loop(Orchestrator(upstream, runner, model="fake-model"), shell=True)
    assert tool_names(llm.requests[0].body) == ["code_interpreter"]


@pytest.mark.parametrize(
    ("arguments", "commands", "problem"),
    [
        ('{"commands": ["ls", "pwd"], "timeout_ms": 1500}', ["ls", "pwd"], None),
        ('{"command": "ls -la"}', ["ls -la"], None),
        ('{"commands": "[\\"a\\", \\"b\\"]"}', ["a", "b"], None),
        ("uname -a", ["uname -a"], None),
        ('{"commands": []}', None, "there are no commands"),
        ('{"commands": [1]}', None, 'no "commands" list'),
        ('{"commands": ' + json.dumps(["true"] * 40) + "}", None, "at most 32"),
    ],
)
def test_reading_a_call(arguments: str, commands: list[str] | None, problem: str | None) -> None:
    action, why = read_shell_call(arguments)
    assert (action.commands if action else None) == commands
    assert (problem is None) == (why is None) and (problem or "") in (why or "")


def test_output_is_capped_together() -> None:
    assert cap_output("abc", "de", None) == ("abc", "de")
    assert cap_output("abc", "de", 5) == ("abc", "de")
    out, err = cap_output("x" * 500, "y" * 500, 120)
    assert len(out) + len(err) == 120 and "omitted" in out and "omitted" in err
    out, err = cap_output("x" * 500, "", 100)
    assert len(out) == 100 and err == ""
    out, err = cap_output("ok\n", "e" * 1000, 100)
    assert out == "ok\n" and len(err) == 97  # stdout's share it does not need goes to stderr
