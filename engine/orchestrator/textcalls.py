"""The text fallback: code_interpreter calls written in the model's text, not as native tool calls.

Recognised forms (docs/conformance/upstream.md, text calls; and what small Qwen models actually
write):

* `<tool_call>{"name": "code_interpreter", "arguments": {"code": "..."}}</tool_call>` (Hermes);
  also with Qwen-Agent's `<code>...</code>` after the JSON;
* `<tool_call><function=code_interpreter><parameter=code>...</parameter></function></tool_call>`
  (Qwen3-Coder XML), with or without the outer tag;
* a fenced block holding `{"name": "code_interpreter", "arguments": {...}}` (```json or bare ```),
  or a reply that is nothing but that object; also written as a Python dict with single quotes;
* a fenced ```python block, only when the request allows it (a final answer may well show code).

The scanner works on streamed text: it passes plain text through at once and holds back only from a
possible opener until the block closes, so markup that turns out to be a call is never shown, and a
code block that is not a call is released unchanged. Text after a recognised call is dropped: it is
the model imagining the result.
"""

from __future__ import annotations

import json
import re
from typing import Any

from engine.orchestrator.calls import ToolCall, loads_lenient, new_call_id
from engine.orchestrator.tool import TOOL_NAME

_CLOSERS = {"<tool_call>": "</tool_call>", "<function=": "</function>", "```": "```"}
_OPENERS = tuple(_CLOSERS)
_BARE = "{"  # a reply that is nothing but the call's JSON object; it closes at the end of the reply
_BARE_HEAD = '{"name":"'  # how such a reply begins, whitespace aside (and ' for ")
_PYTHON_LANGS = ("python", "py", "python3")
_CALL_NAMES = (TOOL_NAME, "python")
_XML_FUNC = re.compile(r"<function=([^>\s]+)>(.*?)(?:</function>|$)", re.DOTALL)
_XML_PARAM = re.compile(r"<parameter=([^>\s]+)>\n?(.*?)\n?(?:</parameter>|$)", re.DOTALL)
_CODE_TAG = re.compile(r"<code>\n?(.*?)\n?(?:</code>|$)", re.DOTALL)


class TextScanner:
    """Feed a round's text deltas; get back what may be shown. After `finish`, `calls` holds the
    calls found in the text and `visible` the text that was shown."""

    def __init__(self, *, enabled: bool = True, python: bool = False) -> None:
        self._enabled = enabled
        self._python = python
        self._buf = ""
        self._block: str | None = None
        self._at_start = True
        self.calls: list[ToolCall] = []
        self.visible = ""

    def fresh(self) -> TextScanner:
        """A new scanner with the same settings."""
        return TextScanner(enabled=self._enabled, python=self._python)

    def feed(self, text: str) -> str:
        if not self._enabled:
            self.visible += text
            return text
        self._buf += text
        return self._pump(final=False)

    def finish(self) -> str:
        return self._pump(final=True) if self._enabled else ""

    def _pump(self, *, final: bool) -> str:
        out: list[str] = []
        if self._at_start and not self._check_bare(final=final):
            return ""
        while self._buf:
            if self._block is None:
                index, opener = _earliest_opener(self._buf)
                if opener is None:
                    keep = 0 if final else _partial_opener_len(self._buf)
                    self._show(out, self._buf[: len(self._buf) - keep])
                    self._buf = self._buf[len(self._buf) - keep :]
                    break
                self._show(out, self._buf[:index])
                self._buf, self._block = self._buf[index:], opener
            elif not self._close_block(out, final=final):
                break
        return "".join(out)

    def _check_bare(self, *, final: bool) -> bool:
        """At the start of the reply: hold back what may be a bare JSON call (some models write
        the object alone, without tags or fence). False while it cannot be told yet."""
        head = "".join(self._buf.split())[: len(_BARE_HEAD)].replace("'", '"')
        if not head and not final:
            return False
        if head and _BARE_HEAD.startswith(head) and len(head) < len(_BARE_HEAD) and not final:
            return False
        self._at_start = False
        if head == _BARE_HEAD:
            self._block = _BARE
        return True

    def _close_block(self, out: list[str], *, final: bool) -> bool:
        """Consume the held block if it is complete (or the text ended); False to wait for more."""
        assert self._block is not None
        opener = self._block
        closer = _CLOSERS.get(opener, "")
        end = self._buf.find(closer, len(opener)) if closer else -1
        if end < 0 and not final:
            return False
        if opener == _BARE:  # the reply has ended: it is one call, or ordinary text to scan
            self._block = None
            if (call := _json_call(self._buf.strip(), tagged=False)) is not None:
                self.calls.append(call)
                self._buf = ""
            return True
        stop = len(self._buf) if end < 0 else end + len(closer)
        raw, body = self._buf[:stop], self._buf[len(opener) : end if end >= 0 else None]
        self._buf, self._block = self._buf[stop:], None
        call = _classify(opener, body, python=self._python)
        if call is None:
            self._show(out, raw)
        else:
            self.calls.append(call)
        return True

    def _show(self, out: list[str], text: str) -> None:
        if text and not self.calls:
            out.append(text)
            self.visible += text


def _earliest_opener(text: str) -> tuple[int, str | None]:
    found = [(i, o) for o in _OPENERS if (i := text.find(o)) >= 0]
    if not found:
        return -1, None
    index, opener = min(found)
    return index, opener


def _partial_opener_len(text: str) -> int:
    """Length of the longest tail of `text` that could be the start of an opener."""
    for size in range(min(len(text), max(map(len, _OPENERS)) - 1), 0, -1):
        tail = text[-size:]
        if any(o.startswith(tail) for o in _OPENERS):
            return size
    return 0


def _classify(opener: str, body: str, *, python: bool) -> ToolCall | None:
    if opener == "<function=":
        return _xml_call("<function=" + body)
    if opener == "<tool_call>":
        text = body.strip()
        if text.startswith("<function="):
            return _xml_call(text)
        return _json_call(text, tagged=True)
    first, _, rest = body.partition("\n")
    lang = first.strip().lower()
    if lang.startswith("{"):  # the whole block on one line: ```{"name": ...}```
        lang, rest = "", body
    if lang in ("json", "") or rest.lstrip().startswith("{"):
        call = _json_call(rest.strip(), tagged=False)
        if call is not None:
            return call
    if python and lang in _PYTHON_LANGS and rest.strip():
        return ToolCall.parse(new_call_id(), TOOL_NAME, {"code": rest})
    return None


def _json_call(text: str, *, tagged: bool) -> ToolCall | None:
    """A call from `{"name": ..., "arguments": ...}`. Inside <tool_call> tags anything is a call (an
    unreadable one is reported to the model); in a plain code block only the tool's own name is."""
    code_tag = _CODE_TAG.search(text)
    head = text[: code_tag.start()] if code_tag else text
    obj: Any = loads_lenient(head.strip())
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        if not tagged:
            return None
        call = ToolCall(new_call_id(), TOOL_NAME, text)
        call.problem = "the text inside <tool_call> is not a JSON object with a name"
        return call
    if not tagged and obj["name"] not in _CALL_NAMES:
        return None
    name = TOOL_NAME if obj["name"] in _CALL_NAMES else obj["name"]
    arguments = obj.get("arguments", obj.get("parameters", {}))
    if code_tag is not None:
        arguments = {"code": code_tag.group(1)}
    if not isinstance(arguments, (str, dict)):
        arguments = json.dumps(arguments)
    return ToolCall.parse(new_call_id(), name, arguments)


def _xml_call(text: str) -> ToolCall | None:
    match = _XML_FUNC.search(text)
    if match is None:
        return None
    params = {name: value for name, value in _XML_PARAM.findall(match.group(2))}
    name = TOOL_NAME if match.group(1) in _CALL_NAMES else match.group(1)
    return ToolCall.parse(new_call_id(), name, params)
