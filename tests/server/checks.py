"""Checks of whole streams against the conformance pages (docs/conformance/common.md, stream
framing; responses.md, chat.md and dashscope.md), item by item of docs/conformance/checklist.md.
Each returns what it parsed so tests can assert on content."""

from __future__ import annotations

from typing import Any

from tests.server.helpers import SSEEvent

TERMINALS = {"response.completed", "response.incomplete", "response.failed", "error"}


def responses_stream(events: list[SSEEvent]) -> list[dict[str, Any]]:
    """Conformance items 21-27, 29, 30 and 33 (no top-level `error` key) on a Responses stream."""
    payloads = []
    for event in events:
        if not event.fields:
            continue  # a keep-alive comment
        assert set(event.fields) == {"event", "data"}, event.raw  # 21
        data = event.json()
        assert data["type"] == event.fields["event"]  # 21
        assert "error" not in data or data["type"] == "error"  # 33
        payloads.append(data)
    assert all(event.data != "[DONE]" for event in events)  # 21
    types = [p["type"] for p in payloads]
    assert types[:2] == ["response.created", "response.in_progress"]  # 22
    assert types[-1] in TERMINALS and sum(t in TERMINALS for t in types) == 1  # 22
    assert [p["sequence_number"] for p in payloads] == list(range(len(payloads)))  # 23
    items = _items(payloads[2:-1])
    for item in items:
        if item["added"]["type"] == "message":
            # A message cut short (the response is incomplete) is itself incomplete.
            cut = types[-1] == "response.incomplete" and item is items[-1]
            _message(item, "incomplete" if cut else "completed")
            continue
        check = {
            "reasoning": _reasoning,
            "code_interpreter_call": _code_call,
            "shell_call": _shell_call,
            "shell_call_output": _shell_output,
        }
        check[item["added"]["type"]](item)
    final = payloads[-1].get("response")
    if types[-1] == "response.completed":
        assert final["output"] == [item["done"] for item in items]  # 30
        assert final["usage"] is not None  # 30
    return payloads


def _items(payloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Events grouped per output item, checking 24 and 25."""
    items: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for p in payloads:
        if p["type"] == "response.output_item.added":
            assert current is None, "items interleave"  # 24
            assert p["output_index"] == len(items)  # 24
            current = {"added": p["item"], "events": []}
            items.append(current)
            continue
        assert current is not None, f"{p['type']} outside an item"
        assert p["output_index"] == len(items) - 1  # 24
        if "item_id" in p:
            assert p["item_id"] == current["added"]["id"]  # 25
        current["events"].append(p)
        if p["type"] == "response.output_item.done":
            assert p["item"]["id"] == current["added"]["id"]
            current["done"] = p["item"]
            current = None
    assert current is None, "an item was never done"  # 24
    return items


def _types(item: dict[str, Any]) -> list[str]:
    return [e["type"].removeprefix("response.") for e in item["events"]]


def _reasoning(item: dict[str, Any]) -> None:  # 26
    assert item["added"]["summary"] == []
    types = _types(item)
    deltas = [e for e in item["events"] if e["type"].endswith("summary_text.delta")]
    assert types == [
        "reasoning_summary_part.added",
        *["reasoning_summary_text.delta"] * len(deltas),
        "reasoning_summary_text.done",
        "reasoning_summary_part.done",
        "output_item.done",
    ]
    assert deltas
    assert all(e["summary_index"] == 0 for e in item["events"] if "summary_index" in e)
    text = "".join(e["delta"] for e in deltas)
    assert text == item["events"][-3]["text"] == item["events"][-2]["part"]["text"]
    assert item["done"]["summary"] == [{"type": "summary_text", "text": text}]


def _code_call(item: dict[str, Any]) -> None:  # 27
    added = item["added"]
    assert (added["status"], added["code"], added["outputs"]) == ("in_progress", "", None)
    assert isinstance(added["container_id"], str)
    types = _types(item)
    deltas = [e for e in item["events"] if e["type"].endswith("call_code.delta")]
    assert types == [
        "code_interpreter_call.in_progress",
        *["code_interpreter_call_code.delta"] * len(deltas),
        "code_interpreter_call_code.done",
        "code_interpreter_call.interpreting",
        "code_interpreter_call.completed",
        "output_item.done",
    ]
    code = "".join(e["delta"] for e in deltas)
    assert code == item["events"][len(deltas) + 1]["code"] == item["done"]["code"]
    assert item["done"]["status"] == "completed"


def _shell_call(item: dict[str, Any]) -> None:
    """A shell_call: its commands streamed one by one (added, delta, done), then the item done."""
    added, done = item["added"], item["done"]
    assert (added["status"], added["action"]["commands"]) == ("in_progress", [])
    assert added["environment"]["type"] == "container_reference"
    commands = done["action"]["commands"]
    expected = ["shell_call_command.added", "shell_call_command.delta", "shell_call_command.done"]
    assert _types(item) == expected * len(commands) + ["output_item.done"]
    for index, command in enumerate(commands):
        added_e, delta, end = item["events"][3 * index : 3 * index + 3]
        assert {added_e["command_index"], delta["command_index"], end["command_index"]} == {index}
        assert added_e["command"] + delta["delta"] == end["command"] == command
    assert done["status"] == "completed"


def _shell_output(item: dict[str, Any]) -> None:
    """A shell_call_output: one delta and one done per command, then the item done with them."""
    added, done = item["added"], item["done"]
    assert (added["status"], added["output"]) == ("in_progress", [])
    count = len(done["output"])
    expected = ["shell_call_output_content.delta", "shell_call_output_content.done"]
    assert _types(item) == expected * count + ["output_item.done"]
    for index in range(count):
        delta, end = item["events"][2 * index : 2 * index + 2]
        assert delta["command_index"] == end["command_index"] == index
        assert end["output"] == [done["output"][index]]
        assert delta["delta"] == {k: done["output"][index][k] for k in ("stdout", "stderr")}
    assert done["status"] == "completed"


def _message(item: dict[str, Any], status: str = "completed") -> None:  # 29
    added = item["added"]
    assert (added["status"], added["content"]) == ("in_progress", [])
    types = _types(item)
    deltas = [e for e in item["events"] if e["type"] == "response.output_text.delta"]
    assert types == [
        "content_part.added",
        *["output_text.delta"] * len(deltas),
        "output_text.done",
        "content_part.done",
        "output_item.done",
    ]
    assert item["events"][0]["part"]["text"] == ""
    assert all(e["logprobs"] == [] and e["content_index"] == 0 for e in deltas)
    text = "".join(e["delta"] for e in deltas)
    assert text == item["events"][-3]["text"] == item["events"][-2]["part"]["text"]
    assert item["done"]["status"] == status
    assert item["done"]["content"][0]["text"] == text


def code_calls_well_formed(output: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Conformance item 16 on the code_interpreter_call items of a final output; returns them."""
    calls = [item for item in output if item["type"] == "code_interpreter_call"]
    for call in calls:
        assert call["status"] in ("completed", "failed")
        assert call["code"] and isinstance(call["container_id"], str)
        assert isinstance(call["outputs"], list)
        for out in call["outputs"]:
            assert (set(out) == {"type", "logs"} and isinstance(out["logs"], str)) or (
                set(out) == {"type", "url"} and out["type"] == "image"
            )
    return calls


def usage_complete(usage: dict[str, Any]) -> None:
    """Conformance items 8 (invariants) and 18 on a Responses usage object."""
    assert isinstance(usage["input_tokens_details"]["cached_tokens"], int)
    assert isinstance(usage["input_tokens_details"]["cache_write_tokens"], int)
    assert isinstance(usage["output_tokens_details"]["reasoning_tokens"], int)
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert usage["output_tokens_details"]["reasoning_tokens"] <= usage["output_tokens"]
    assert isinstance(usage["x_tools"]["code_interpreter"]["count"], int)


def chat_stream(events: list[SSEEvent]) -> list[dict[str, Any]]:
    """Conformance items 35-37 and 39 on a Chat Completions stream; returns the chunks."""
    chunks = []
    for event in events:
        assert set(event.fields) <= {"data"}, event.raw  # 35: data lines or comments only
        if event.fields:
            chunks.append(event.json() if event.data != "[DONE]" else "[DONE]")
    assert chunks[-1] == "[DONE]" and chunks.count("[DONE]") == 1  # 35
    chunks = chunks[:-1]
    assert len({(c["id"], c["object"], c["created"], c["model"]) for c in chunks}) == 1  # 36
    assert chunks[0]["id"].startswith("chatcmpl-")
    assert chunks[0]["object"] == "chat.completion.chunk"
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"  # 37
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert [f for f in finishes if f is not None] in (["stop"], ["length"])  # 39
    return chunks


def dashscope_stream(events: list[SSEEvent]) -> list[dict[str, Any]]:
    """Conformance items 45, 46, 48 (shape), 49 and 50 on a native stream; returns the payloads."""
    payloads: list[dict[str, Any]] = []
    for event in events:
        if not event.fields:
            continue
        number = len(payloads) + 1
        lines = event.raw.split("\n")
        assert lines[:3] == [f"id:{number}", "event:result", ":HTTP_STATUS/200"], event.raw  # 45
        assert lines[3].startswith("data:{") and len(lines) == 4  # 45: one line of JSON
        payloads.append(event.json())
    assert payloads
    finishes = [p["output"]["choices"][0]["finish_reason"] for p in payloads]
    assert finishes[:-1] == ["null"] * (len(payloads) - 1) and finishes[-1] in ("stop", "length")
    seen_tools = False
    output_tokens = 0
    for p in payloads:
        message = p["output"]["choices"][0]["message"]  # 46
        assert message["role"] == "assistant"
        assert isinstance(message["content"], str) and isinstance(message["reasoning_content"], str)
        usage = p["usage"]  # 49
        assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
        assert isinstance(usage["output_tokens_details"]["reasoning_tokens"], int)
        assert usage["output_tokens"] >= output_tokens
        output_tokens = usage["output_tokens"]
        if "tool_info" in p["output"]:
            seen_tools = True
            assert usage["plugins"]["code_interpreter"]["count"] == len(p["output"]["tool_info"])
        else:
            assert not seen_tools  # 48: once present, on every later event
    assert "plugins" in payloads[-1]["usage"]  # 1.4: the last event always has the counter
    assert len({p["request_id"] for p in payloads}) == 1  # 50
    return payloads
