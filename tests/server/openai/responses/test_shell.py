"""The hosted shell tool (`{"type": "shell"}`) on the Responses surface, against `lci serve` with the
real `openai` SDK and a scripted model: its commands run in the container (the same one as the
code interpreter's), come back as `shell_call` / `shell_call_output` items in OpenAI's event order,
and go on through `previous_response_id` and input items given back."""

from __future__ import annotations

import json
import time
from typing import Any

import openai
import pytest
from openai.types.responses import Response

from tests.fake_llm import Call, stream
from tests.server import checks
from tests.server.helpers import FakeModel, LciServer, sse_events

SHELL = [{"type": "shell", "environment": {"type": "container_auto"}}]
BOTH = [{"type": "code_interpreter"}, *SHELL]


def shell(*commands: str, **extra: Any) -> Call:
    return Call(name="shell", arguments=json.dumps({"commands": list(commands), **extra}))


def items(response: Any, kind: str) -> list[dict[str, Any]]:
    data = response if isinstance(response, dict) else response.model_dump()
    return [item for item in data["output"] if item["type"] == kind]


def test_commands_run_and_come_back_as_items(fake: FakeModel, server: LciServer) -> None:
    fake.script(
        stream(calls=[shell("echo hi; pwd", "echo oops >&2; exit 3", "no-such-program")]),
        stream(text="done"),
    )
    response = server.openai().responses.create(model="m", input="x", tools=SHELL)  # type: ignore[list-item]
    fake.check()
    data = response.model_dump()
    assert [item["type"] for item in data["output"]] == [
        "shell_call",
        "shell_call_output",
        "message",
    ]
    call, output = data["output"][:2]
    assert call["action"]["commands"] == [
        "echo hi; pwd",
        "echo oops >&2; exit 3",
        "no-such-program",
    ]
    assert (
        call["call_id"] == output["call_id"] and call["status"] == output["status"] == "completed"
    )
    container = call["environment"]["container_id"]
    first, failed, missing = output["output"]
    assert first["stdout"].startswith("hi\n") and first["outcome"] == {
        "type": "exit",
        "exit_code": 0,
    }
    assert (failed["stderr"], failed["outcome"]["exit_code"]) == ("oops\n", 3)
    assert missing["outcome"]["exit_code"] == 127 and "not found" in missing["stderr"]
    assert response.output_text == "done"
    assert response.usage.x_tools == {"shell": {"count": 1}}  # type: ignore[union-attr]
    assert response.to_dict()["tools"] == SHELL
    first_request, second_request = fake.chat_requests()
    assert [t["function"]["name"] for t in first_request["tools"]] == ["shell"]
    fed_back = second_request["messages"][-1]["content"]
    assert "exit code: 3" in fed_back and "oops" in fed_back and "exit code: 127" in fed_back
    with server.client() as client:  # the container is a Containers API container
        assert client.get(f"/v1/containers/{container}").status_code == 200


def test_streamed_in_openais_event_order(fake: FakeModel, server: LciServer) -> None:
    fake.script(stream(calls=[shell("echo one", "echo two >&2")]), stream(text="ok"))
    events = sse_events(
        server, "/v1/responses", {"model": "m", "input": "x", "tools": SHELL, "stream": True}
    )
    fake.check()
    payloads = checks.responses_stream(events)  # every item's events checked, in order
    final = payloads[-1]["response"]
    Response.model_validate(final)
    types = [p["type"] for p in payloads]
    call_done = types.index("response.shell_call_command.done")
    assert types[call_done - 2 : call_done + 1] == [
        "response.shell_call_command.added",
        "response.shell_call_command.delta",
        "response.shell_call_command.done",
    ]
    contents = [p for p in payloads if p["type"] == "response.shell_call_output_content.done"]
    assert [c["output"][0]["stdout"] for c in contents] == ["one\n", ""]
    assert contents[1]["output"][0]["stderr"] == "two\n"


def test_streamed_with_the_sdk(fake: FakeModel, server: LciServer) -> None:
    fake.script(stream(calls=[shell("echo sdk")]), stream(text="ok"))
    with server.openai().responses.stream(model="m", input="x", tools=SHELL) as events:  # type: ignore[arg-type]
        kinds = [event.type for event in events]
        final = events.get_final_response()
    fake.check()
    assert "response.shell_call_output_content.delta" in kinds
    (output,) = items(final, "shell_call_output")
    assert output["output"][0]["stdout"] == "sdk\n"


def test_a_command_past_its_timeout_is_killed(fake: FakeModel, server: LciServer) -> None:
    fake.script(stream(calls=[shell("echo started; sleep 30", "echo after", timeout_ms=700)]))
    fake.script(stream(text="it timed out"))
    started = time.monotonic()
    response = server.openai().responses.create(model="m", input="x", tools=SHELL)  # type: ignore[list-item]
    fake.check()
    assert time.monotonic() - started < 15
    (output,) = items(response, "shell_call_output")
    slow, after = output["output"]
    assert slow["outcome"] == {"type": "timeout"} and slow["stdout"] == "started\n"
    assert after["outcome"] == {"type": "exit", "exit_code": 0}  # the next command still runs
    assert "Timeout" in fake.chat_requests()[1]["messages"][-1]["content"]


def test_output_is_cut_to_max_output_length(fake: FakeModel, server: LciServer) -> None:
    fake.script(
        stream(calls=[shell("seq 1 5000; seq 1 3000 >&2", "echo short", max_output_length=200)]),
        stream(text="long"),
    )
    response = server.openai().responses.create(model="m", input="x", tools=SHELL)  # type: ignore[list-item]
    fake.check()
    (call,) = items(response, "shell_call")
    (output,) = items(response, "shell_call_output")
    assert call["action"]["max_output_length"] == output["max_output_length"] == 200
    long, short = output["output"]
    assert len(long["stdout"]) + len(long["stderr"]) == 200
    assert long["stdout"].startswith("1\n2\n") and long["stdout"].endswith("4999\n5000\n")
    assert "characters omitted" in long["stdout"] and "characters omitted" in long["stderr"]
    assert short["stdout"] == "short\n"
    assert len(fake.chat_requests()[1]["messages"][-1]["content"]) < 1000


def test_shell_and_code_share_the_container(fake: FakeModel, server: LciServer) -> None:
    fake.script(
        stream(calls=["open('from_code.txt', 'w').write('code')"]),
        stream(calls=[shell("cat from_code.txt && echo shell > from_shell.txt")]),
        stream(calls=["open('from_shell.txt').read()"]),
        stream(text="shared"),
    )
    response = server.openai().responses.create(model="m", input="x", tools=BOTH)  # type: ignore[list-item]
    fake.check()
    code_calls = items(response, "code_interpreter_call")
    (call,) = items(response, "shell_call")
    (output,) = items(response, "shell_call_output")
    assert output["output"][0]["stdout"] == "code"
    assert code_calls[1]["outputs"][-1]["logs"] == "'shell\\n'"
    containers = {c["container_id"] for c in code_calls} | {call["environment"]["container_id"]}
    assert len(containers) == 1
    assert response.usage.x_tools == {"code_interpreter": {"count": 2}, "shell": {"count": 1}}  # type: ignore[union-attr]
    names = [t["function"]["name"] for t in fake.chat_requests()[0]["tools"]]
    assert names == ["code_interpreter", "shell"]


def test_an_existing_container_by_reference(fake: FakeModel, server: LciServer) -> None:
    client = server.openai()
    container = client.containers.create(name="for the shell")
    fake.script(stream(calls=[shell("echo here > mark.txt")]), stream(text="ok"))
    tools = [
        {
            "type": "shell",
            "environment": {"type": "container_reference", "container_id": container.id},
        }
    ]
    response = client.responses.create(model="m", input="x", tools=tools)  # type: ignore[arg-type]
    fake.check()
    (call,) = items(response, "shell_call")
    assert call["environment"]["container_id"] == container.id
    files = client.containers.files.list(container.id)
    assert any(f.path.endswith("mark.txt") for f in files)


def test_previous_response_id_continues_in_the_container(
    fake: FakeModel, server: LciServer
) -> None:
    client = server.openai()
    fake.script(stream(calls=[shell("echo 42 > n.txt")]), stream(text="saved"))
    first = client.responses.create(model="m", input="save 42", tools=SHELL)  # type: ignore[list-item]
    fake.script(stream(calls=[shell("cat n.txt")]), stream(text="42"))
    second = client.responses.create(
        model="m",
        input="read it",
        tools=SHELL,
        previous_response_id=first.id,  # type: ignore[list-item]
    )
    fake.check()
    (output,) = items(second, "shell_call_output")
    assert output["output"][0]["stdout"] == "42\n"
    (old,) = items(first, "shell_call")
    (new,) = items(second, "shell_call")
    assert old["environment"] == new["environment"]
    messages = fake.chat_requests()[2]["messages"]
    calls = [m for m in messages if m.get("tool_calls")]
    assert calls[0]["tool_calls"][0]["function"]["name"] == "shell"
    assert json.loads(calls[0]["tool_calls"][0]["function"]["arguments"]) == {
        "commands": ["echo 42 > n.txt"]
    }
    tool = next(m for m in messages if m["role"] == "tool")
    assert (
        tool["tool_call_id"] == calls[0]["tool_calls"][0]["id"]
        and "exit code: 0" in tool["content"]
    )


def test_shell_items_given_back_become_the_conversation(fake: FakeModel, server: LciServer) -> None:
    fake.script(stream(text="it said hello"))
    given = [
        {"role": "user", "content": "say hello"},
        {
            "type": "shell_call",
            "call_id": "call_1",
            "action": {"commands": ["echo hello", "sleep 9"], "timeout_ms": 100},
            "status": "completed",
        },
        {
            "type": "shell_call_output",
            "call_id": "call_1",
            "output": [
                {"stdout": "hello\n", "stderr": "", "outcome": {"type": "exit", "exit_code": 0}},
                {"stdout": "", "stderr": "", "outcome": {"type": "timeout"}},
            ],
        },
        {"type": "shell_call", "call_id": "call_2", "action": {"commands": ["true"]}},
        {"role": "user", "content": "what did it say?"},
    ]
    response = server.openai().responses.create(model="m", input=given, tools=SHELL)  # type: ignore[arg-type]
    fake.check()
    assert response.output_text == "it said hello"
    messages = fake.chat_requests()[0]["messages"]
    roles = [m["role"] for m in messages]
    assert roles == ["system", "user", "assistant", "tool", "assistant", "tool", "user"]
    assert messages[2]["tool_calls"][0]["id"] == messages[3]["tool_call_id"] == "call_1"
    assert "$ echo hello" in messages[3]["content"] and "hello" in messages[3]["content"]
    assert "Timeout" in messages[3]["content"]
    assert messages[5]["tool_call_id"] == "call_2"  # a call given without output is answered


@pytest.mark.parametrize(
    ("tools", "param"),
    [
        ([{"type": "shell", "environment": {"type": "local"}}], "tools[0].environment.type"),
        (
            [
                {"type": "code_interpreter", "container": "0123456789abcdef"},
                {
                    "type": "shell",
                    "environment": {
                        "type": "container_reference",
                        "container_id": "fedcba9876543210",
                    },
                },
            ],
            "tools[1].environment",
        ),
    ],
    ids=["local", "two-containers"],
)
def test_environments_lci_cannot_serve_are_400(
    fake: FakeModel, server: LciServer, tools: list[dict[str, Any]], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        server.openai().responses.create(model="m", input="x", tools=tools)  # type: ignore[arg-type]
    assert caught.value.body["param"] == param  # type: ignore[index]
    assert fake.requests == []


def test_tool_choice_shell_requires_a_call(fake: FakeModel, server: LciServer) -> None:
    fake.script(stream(calls=[shell("true")]), stream(text="ok"))
    response = server.openai().responses.create(
        model="m",
        input="x",
        tools=SHELL,  # type: ignore[arg-type]
        tool_choice={"type": "shell"},  # type: ignore[arg-type]
    )
    fake.check()
    assert response.to_dict()["tool_choice"] == {"type": "shell"}
    assert [r["tool_choice"] for r in fake.chat_requests()] == ["required", "auto"]
