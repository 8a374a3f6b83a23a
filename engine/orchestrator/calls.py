"""Tool calls: accumulating streamed fragments by index, and reading the code out of arguments.

Arguments are read leniently, because small models and some servers produce almost-JSON: literal
newlines inside strings, a JSON string holding the JSON object, a truncated closing brace, or plain
code instead of an object (Qwen-Agent falls back the same way). The closing brackets at the end of
the code are mended when the call's JSON braces bled into them (`brackets`).
"""

from __future__ import annotations

import ast
import json
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from engine.orchestrator.brackets import compiles, mend_closing_brackets
from engine.orchestrator.tool import TOOL_NAME

_FENCE = re.compile(r"```[^\n]*\n(.*?)```", re.DOTALL)
_TRIPLE = re.compile(r'"""\n?(.*?)"""', re.DOTALL)
_LITERAL_MAX = 200_000  # literal_eval of a huge literal costs memory and stack; JSON does not


def new_call_id() -> str:
    return "call_" + secrets.token_hex(12)


@dataclass
class ToolCall:
    """A complete call. `code` is None when it cannot be run; `problem` then says why."""

    id: str
    name: str
    arguments: str
    code: str | None = None
    problem: str | None = None
    cut_off: bool = False  # cut off by the model server's token limit before its code was whole

    @classmethod
    def parse(cls, call_id: str, name: str, arguments: str | dict[str, Any]) -> ToolCall:
        raw = arguments if isinstance(arguments, str) else json.dumps(arguments)
        call = cls(call_id, name or TOOL_NAME, raw)
        if call.name == TOOL_NAME:
            call.code, call.problem = read_code(arguments)
        if call.code is not None and (mended := mend_closing_brackets(call.code)) != call.code:
            # What ran is what the conversation records, so the model does not copy the slip.
            call.code, call.arguments = mended, json.dumps({"code": mended})
        return call

    def end_of_cut_reply(self) -> None:
        """This call ends a reply the model server cut at its token limit. Its arguments are read
        leniently, so a call missing only its closing `"}` still runs; one whose code does not
        compile (or cannot be read) was cut inside the code and must not run as if whole."""
        if self.name == TOOL_NAME and (self.code is None or compiles(self.code) is False):
            self.cut_off = True

    def as_message_entry(self) -> dict[str, Any]:
        """The entry of the assistant message's `tool_calls` list that records this call."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self._json_arguments()},
        }

    def _json_arguments(self) -> str:
        # The call goes back to the model server in the conversation, and servers parse it there:
        # llama.cpp answers 500 to every later round if a cut-off reply's arguments are no JSON.
        try:
            if isinstance(json.loads(self.arguments), dict):
                return self.arguments
        except json.JSONDecodeError:
            pass
        if self.code is not None:
            return json.dumps({"code": self.code})
        return json.dumps({"unreadable": self.arguments})


def read_code(arguments: str | dict[str, Any]) -> tuple[str | None, str | None]:
    """(code, None) when code could be read from the arguments, else (None, problem)."""
    value: Any = arguments
    for _ in range(2):  # a JSON string holding the JSON object is unwrapped once
        if not isinstance(value, str):
            break
        text = value.strip()
        if not text.startswith(("{", '"')):
            fenced = _FENCE.search(text)
            return _nonempty(fenced.group(1) if fenced else text)
        value = loads_lenient(text)
        if value is None:
            return None, "the arguments are not valid JSON"
    if isinstance(value, dict):
        code = value.get("code")
        if code is None and len(value) == 1:
            code = next(iter(value.values()))
        if isinstance(code, str):
            return _nonempty(code)
        return None, 'no "code" string in the arguments'
    return None, "the arguments are not a JSON object"


def _nonempty(code: str) -> tuple[str | None, str | None]:
    return (code, None) if code.strip() else (None, "the code is empty")


def loads_lenient(text: str) -> Any:
    """JSON as small models write it, or None. strict=False admits raw newlines and tabs inside
    strings; Python triple-quoted strings become JSON strings; the suffixes repair a reply cut off
    just before its closing quote and braces. A Python dict literal (single quotes, as models
    that think in Python write it) is read as such: `literal_eval` only builds constants."""
    original = text
    if '"""' in text:
        text = _TRIPLE.sub(lambda m: json.dumps(m.group(1)), text)
    for suffix in ("", "}", '"}', "}}", '"}}'):
        try:
            return json.loads(text + suffix, strict=False)
        except json.JSONDecodeError:
            continue
    if original.lstrip().startswith("{") and len(original) <= _LITERAL_MAX:
        try:
            return ast.literal_eval(original.strip())
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return None
    return None


@dataclass
class _Slot:
    id: str
    name: str | None = None
    parts: list[str] = field(default_factory=list)
    from_server: bool = False


class CallAccumulator:
    """Joins tool-call fragments of one streamed round (docs/conformance/upstream.md, reading the
    stream): fragments with the same `index` belong together, arguments are concatenated, the first
    non-null id and name win.
    Servers that send whole calls (Ollama) are the one-fragment case."""

    def __init__(self) -> None:
        self._slots: dict[int, _Slot] = {}
        self._order: list[_Slot] = []

    def add(
        self, index: int | None, call_id: str | None, name: str | None, arguments: str | None
    ) -> str | None:
        """Record one fragment; returns the call's id when this fragment began a new call."""
        key = len(self._order) if index is None else index
        slot = self._slots.get(key)
        # A fresh id on an index that already holds a complete-looking call is a new call: some
        # servers number every whole call 0.
        if slot is not None and call_id and slot.from_server and call_id != slot.id and slot.parts:
            slot = None
        if slot is None:
            slot = self._slots[key] = _Slot(call_id or new_call_id(), from_server=bool(call_id))
            self._order.append(slot)
            started = slot.id
        else:
            started = None
        slot.name = slot.name or name or None
        if arguments:
            slot.parts.append(arguments)
        return started

    def __bool__(self) -> bool:
        return bool(self._order)

    def finish(self) -> list[ToolCall]:
        """The complete calls, in the order the model began them."""
        return [
            ToolCall.parse(slot.id, slot.name or TOOL_NAME, "".join(slot.parts))
            for slot in self._order
        ]
