"""Reading a Responses request: its `tools` (code interpreter and container, ignored built-ins,
refused functions) and its `input` items as the chat messages the loop sends
(docs/conformance/upstream.md, conversation history)."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from engine.errors import BadParameter
from engine.orchestrator import (
    NO_OUTPUT,
    TOOL_NAME,
    WEB_EXTRACTOR,
    WEB_SEARCH,
    ToolCall,
    new_call_id,
)
from engine.server.openai.containers.registry import MEMORY_TIERS_MB
from engine.server.openai.responses.shell import (
    ShellCallItem,
    ShellCallOutputItem,
    call_message,
    output_message,
    read_environment,
)
from engine.server.runtime.conversation import MUTUALLY_EXCLUSIVE

log = logging.getLogger(__name__)

CODE_INTERPRETER_ECHO: dict[str, Any] = {"type": "code_interpreter", "container": {"type": "auto"}}
_SESSION_ID = re.compile(r"^[0-9a-f]{16}$")
# Tool types that enable a web tool: OpenAI's (and its dated variants), and DashScope's extractor.
WEB_TOOL_TYPES = {
    "web_search": WEB_SEARCH,
    "web_search_preview": WEB_SEARCH,
    "web_search_2025_08_26": WEB_SEARCH,
    "web_search_preview_2025_03_11": WEB_SEARCH,
    "web_extractor": WEB_EXTRACTOR,
}


@dataclass
class ToolSet:
    code_interpreter: bool = False
    container: str | None = None  # an existing session to continue in
    file_ids: list[str] = field(default_factory=list)  # copied into a new ("auto") container
    memory_limit: str | None = None  # of a new container
    container_param: str = "tools"
    functions: bool = False
    echo: list[dict[str, Any]] = field(default_factory=list)  # tools in effect, as echoed back
    web: list[str] = field(default_factory=list)  # web tools enabled (with a provider)
    shell: bool = False  # the shell tool, in the same container as the code interpreter

    @property
    def runs(self) -> bool:
        """A tool that runs in a container is on."""
        return self.code_interpreter or self.shell


def read_tools(
    tools: list[Any],
    unsupported: Literal["ignore", "error"],
    web_available: frozenset[str] = frozenset(),
) -> ToolSet:
    """The tools of a request. Web tools count only where the server has a provider for them;
    otherwise they are ignored like other built-in tools lci lacks (or refused, when strict)."""
    found = ToolSet()
    shell_echo: list[dict[str, Any]] = []
    for index, tool in enumerate(tools):
        kind = tool.get("type") if isinstance(tool, dict) else None
        web = WEB_TOOL_TYPES.get(kind) if isinstance(kind, str) else None
        if web is not None and web in web_available:
            if web not in found.web:
                found.web.append(web)
        elif kind == "code_interpreter":
            found.code_interpreter = True
            param = f"tools[{index}].container"
            _share(found, _container(tool.get("container"), param), param)
            _auto(found, tool.get("container"), param)
        elif kind == "shell" and not found.shell:
            found.shell = True
            param = f"tools[{index}].environment"
            env = read_environment(tool.get("environment"), param)
            _share(found, _container(env.container, f"{param}.container_id"), param)
            if env.container is None:
                value = {"type": "auto", "file_ids": env.file_ids, "memory_limit": env.memory_limit}
                _auto(found, value, param)
            shell_echo.append(env.echo)
        elif kind == "function":
            found.functions = True
        elif unsupported == "error":
            why = "is not configured on this server" if web else "is not supported"
            raise BadParameter(f"tool type {kind!r} {why}", f"tools[{index}].type")
        else:
            log.warning("ignoring a tool of type %r: lci provides only code_interpreter", kind)
    if found.code_interpreter and found.functions:
        raise BadParameter(MUTUALLY_EXCLUSIVE, "tools")
    if found.functions:
        raise BadParameter(
            "function tools are not supported on /v1/responses; use /v1/chat/completions",
            "tools",
        )
    if found.code_interpreter:
        found.echo = [CODE_INTERPRETER_ECHO]
    found.echo += shell_echo
    if WEB_SEARCH in found.web:  # web_extractor is no OpenAI tool type: not echoed
        found.echo.append({"type": "web_search"})
    return found


def _container(value: Any, param: str) -> str | None:
    """The session a `container` names: a string id; "auto", an object or nothing mean a new one."""
    if value is None or value == "auto" or isinstance(value, dict):
        return None
    if isinstance(value, str) and _SESSION_ID.match(value):
        return value
    raise BadParameter(f"container {value!r} is not a session id of this server", param)


def _share(found: ToolSet, container: str | None, param: str) -> None:
    """The container a tool names; the code interpreter and the shell share one."""
    if container is None:
        return
    if found.container is not None and found.container != container:
        raise BadParameter("the code interpreter and the shell must use the same container", param)
    found.container = container


def _auto(found: ToolSet, value: Any, param: str) -> None:
    """The `file_ids` and `memory_limit` of an `{"type": "auto", ...}` container (the files of
    both tools' auto containers are added together)."""
    if not isinstance(value, dict):
        return
    found.container_param = param
    if value.get("type", "auto") != "auto":
        raise BadParameter("container.type must be 'auto'", f"{param}.type")
    file_ids = value.get("file_ids") or []
    if not isinstance(file_ids, list) or not all(isinstance(f, str) for f in file_ids):
        raise BadParameter("file_ids must be a list of file ids", f"{param}.file_ids")
    memory = value.get("memory_limit")
    if memory is not None and memory not in MEMORY_TIERS_MB:
        tiers = ", ".join(MEMORY_TIERS_MB)
        raise BadParameter(f"memory_limit must be one of {tiers}", f"{param}.memory_limit")
    found.file_ids = [*found.file_ids, *(f for f in file_ids if f not in found.file_ids)]
    found.memory_limit = found.memory_limit or memory


class _Loose(BaseModel):
    model_config = ConfigDict(
        extra="allow", strict=True
    )  # ids, statuses, annotations ... are not needed


class TextPart(_Loose):
    type: Literal["input_text", "output_text", "text"]
    text: str


class ImagePart(_Loose):
    type: Literal["input_image"]
    image_url: str


class MessageItem(_Loose):
    """A message; `type` may be left out (the easy input form)."""

    type: Literal["message"] = "message"
    role: Literal["user", "system", "developer", "assistant"]
    content: str | list[Annotated[TextPart | ImagePart, Field(discriminator="type")]]


class SummaryPart(_Loose):
    text: str


class ReasoningItem(_Loose):
    type: Literal["reasoning"]
    summary: list[SummaryPart] = Field(default_factory=list)
    content: list[SummaryPart] | None = None


class LogsOutput(_Loose):
    type: Literal["logs"]
    logs: str


class ImageOutput(_Loose):
    type: Literal["image"]
    url: str


class CodeCallItem(_Loose):
    type: Literal["code_interpreter_call"]
    id: str | None = None
    code: str | None = None
    outputs: list[Annotated[LogsOutput | ImageOutput, Field(discriminator="type")]] | None = None


class WebCallItem(_Loose):
    """A web_search_call: its action (search with query and sources, or open_page with url)."""

    type: Literal["web_search_call"]
    id: str | None = None
    action: dict[str, Any] | None = None


InputItem = (
    MessageItem | ReasoningItem | CodeCallItem | WebCallItem | ShellCallItem | ShellCallOutputItem
)
_ITEMS: TypeAdapter[list[InputItem]] = TypeAdapter(list[InputItem])


def input_messages(value: str | list[InputItem]) -> list[dict[str, Any]]:
    """`input` as chat messages: a string is one user message; reasoning goes with the next
    assistant message, a code call becomes an assistant tool call and a tool message rebuilt from
    its outputs."""
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    messages: list[dict[str, Any]] = []
    reasoning = ""
    shell_calls: dict[str, list[str]] = {}  # call id -> its commands
    for item in value:
        if isinstance(item, ShellCallItem):
            messages.append(call_message(item, _assistant("", reasoning)))
            shell_calls[item.call_id], reasoning = item.action.commands, ""
        elif isinstance(item, ShellCallOutputItem):
            messages.append(output_message(item, shell_calls.pop(item.call_id, [])))
        elif isinstance(item, ReasoningItem):
            reasoning += "".join(part.text for part in [*item.summary, *(item.content or ())])
        elif isinstance(item, CodeCallItem):
            messages.extend(_code_call(item, reasoning))
            reasoning = ""
        elif isinstance(item, WebCallItem):
            messages.extend(_web_call(item, reasoning))
            reasoning = ""
        elif item.role == "assistant":
            messages.append(_assistant(_text(item.content), reasoning))
            reasoning = ""
        else:
            role = "system" if item.role == "developer" else item.role
            messages.append({"role": role, "content": _content(item.content)})
    return _answer_calls(messages, shell_calls)


def _answer_calls(
    messages: list[dict[str, Any]], unanswered: dict[str, Any]
) -> list[dict[str, Any]]:
    """A tool message after each shell call given without its output: model servers refuse a
    tool call left without an answer."""
    for call_id in unanswered:
        at = next(i for i, m in enumerate(messages) if _calls(m, call_id))
        messages.insert(at + 1, {"role": "tool", "tool_call_id": call_id, "content": "-"})
    return messages


def _calls(message: dict[str, Any], call_id: str) -> bool:
    return any(call["id"] == call_id for call in message.get("tool_calls") or ())


def output_messages(output: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A response's own output items as the chat messages that continue from it."""
    return input_messages(_ITEMS.validate_python(output))


def _assistant(content: str, reasoning: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if reasoning:
        message["reasoning_content"] = reasoning
    return message


def _content(content: str | list[TextPart | ImagePart]) -> str | list[dict[str, Any]]:
    if isinstance(content, str) or all(isinstance(part, TextPart) for part in content):
        return _text(content)
    return [
        {"type": "text", "text": part.text}
        if isinstance(part, TextPart)
        else {"type": "image_url", "image_url": {"url": part.image_url}}
        for part in content
    ]


def _text(content: str | list[TextPart | ImagePart]) -> str:
    if isinstance(content, str):
        return content
    return "".join(part.text for part in content if isinstance(part, TextPart))


def _code_call(item: CodeCallItem, reasoning: str) -> list[dict[str, Any]]:
    call = ToolCall(item.id or new_call_id(), TOOL_NAME, json.dumps({"code": item.code or ""}))
    assistant = _assistant("", reasoning)
    assistant["tool_calls"] = [call.as_message_entry()]
    return [assistant, {"role": "tool", "tool_call_id": call.id, "content": outputs_text(item)}]


def _web_call(item: WebCallItem, reasoning: str) -> list[dict[str, Any]]:
    """A web call as the tool call it was and a tool message naming what it found (the text
    the model read then is not kept in the item)."""
    action = item.action or {}
    if action.get("type") == "open_page":
        name, arguments = WEB_EXTRACTOR, {"url": action.get("url") or ""}
        result = f"(The page {action.get('url')} was read.)"
    else:
        name, arguments = WEB_SEARCH, {"query": action.get("query") or ""}
        sources = action.get("sources") or []
        urls = [s["url"] for s in sources if isinstance(s, dict) and isinstance(s.get("url"), str)]
        result = "Results:\n" + "\n".join(urls) if urls else "(The search was run.)"
    call = ToolCall(item.id or new_call_id(), name, json.dumps(arguments))
    assistant = _assistant("", reasoning)
    assistant["tool_calls"] = [call.as_message_entry()]
    return [assistant, {"role": "tool", "tool_call_id": call.id, "content": result}]


def outputs_text(item: CodeCallItem) -> str:
    """A code call's outputs as the text of its tool message: logs, and images mentioned."""
    pieces = []
    for output in item.outputs or ():
        if isinstance(output, LogsOutput):
            if output.logs:
                pieces.append(output.logs)
        elif output.url.startswith("data:"):  # an inline image would flood the context
            pieces.append("[image shown to the user]")
        else:
            pieces.append(f"![image]({output.url})")
    return "\n".join(pieces) or NO_OUTPUT
