"""The shell tool on the Responses surface (OpenAI's hosted shell, `{"type": "shell"}`).

Its `environment` is read here: `container_auto` (a new container, with `file_ids` and
`memory_limit` as the code interpreter's auto container) or `container_reference` (an existing one);
with the code interpreter in the same request, both run in one container. Each shell call that runs
is two output items, streamed as

    output_item.added(shell_call)  (shell_call_command.added  .delta  .done)*  output_item.done
    output_item.added(shell_call_output)
        (shell_call_output_content.delta  shell_call_output_content.done)*  output_item.done

one command block per command (each output block as its command ends), and counted in
`usage.x_tools.shell`. A call lci answered without running it (unreadable arguments) has no items.
Given back as input, a `shell_call` becomes the assistant's tool call and its `shell_call_output`
the tool result.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from engine.errors import BadParameter
from engine.orchestrator import (
    SHELL_TOOL,
    ShellCall,
    ShellCommandDone,
    ShellOutput,
    ShellResult,
    ToolCall,
    command_text,
)
from engine.server.openai.responses.items import new_id

Piece = tuple[str, dict[str, Any]]  # an event's type and fields
DONE = "response.output_item.done"  # the piece that completes an item (the renderer records it)
_ENV_KEYS = ("type", "container_id", "file_ids", "memory_limit")


@dataclass
class ShellEnvironment:
    container: str | None = None  # container_reference: the container to run in
    file_ids: list[str] = field(default_factory=list)
    memory_limit: str | None = None
    echo: dict[str, Any] = field(default_factory=dict)  # the tool as the response repeats it


def read_environment(value: Any, param: str) -> ShellEnvironment:
    """The shell tool's `environment` (none: a new container, as `container_auto`)."""
    if value is None:
        return ShellEnvironment(echo={"type": "shell", "environment": {"type": "container_auto"}})
    if not isinstance(value, dict):
        raise BadParameter("environment must be an object", param)
    kind = value.get("type")
    echo = {"type": "shell", "environment": {k: value[k] for k in _ENV_KEYS if k in value}}
    if kind == "container_reference":
        container = value.get("container_id")
        if not isinstance(container, str):
            raise BadParameter("container_id must be a container id", f"{param}.container_id")
        return ShellEnvironment(container=container, echo=echo)
    if kind == "container_auto":
        file_ids = value.get("file_ids") or []
        if not isinstance(file_ids, list) or not all(isinstance(f, str) for f in file_ids):
            raise BadParameter("file_ids must be a list of file ids", f"{param}.file_ids")
        return ShellEnvironment(None, file_ids, value.get("memory_limit"), echo)
    if kind == "local":
        raise BadParameter(
            "a local shell environment runs on the client; lci runs the shell in a container "
            "(container_auto or container_reference)",
            f"{param}.type",
        )
    raise BadParameter("environment.type must be container_auto or container_reference", param)


# -- input items ------------------------------------------------------------------------------
class _Loose(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class ShellActionParam(_Loose):
    commands: list[str]
    timeout_ms: int | None = None
    max_output_length: int | None = None


class ShellCallItem(_Loose):
    type: Literal["shell_call"]
    call_id: str
    action: ShellActionParam


class ShellOutcomeParam(_Loose):
    type: Literal["exit", "timeout"]
    exit_code: int | None = None


class ShellOutputParam(_Loose):
    stdout: str = ""
    stderr: str = ""
    outcome: ShellOutcomeParam


class ShellCallOutputItem(_Loose):
    type: Literal["shell_call_output"]
    call_id: str
    output: list[ShellOutputParam] = Field(default_factory=list)


def call_message(item: ShellCallItem, assistant: dict[str, Any]) -> dict[str, Any]:
    """`assistant` (an empty assistant message) carrying the item as its shell tool call."""
    arguments = item.action.model_dump(exclude_none=True, include={"commands", "timeout_ms"})
    call = ToolCall(item.call_id, SHELL_TOOL, json.dumps(arguments))
    return {**assistant, "tool_calls": [call.as_message_entry()]}


def output_message(item: ShellCallOutputItem, commands: list[str]) -> dict[str, Any]:
    """The tool message of a shell call's output, the commands named as the model saw them."""
    texts = []
    for index, part in enumerate(item.output):
        command = commands[index] if index < len(commands) else "(command)"
        timed_out = part.outcome.type == "timeout"
        output = ShellOutput(
            command=command, stdout=part.stdout, stderr=part.stderr,
            exit_code=None if timed_out else part.outcome.exit_code or 0, timed_out=timed_out,
        )  # fmt: skip
        texts.append(command_text(output))
    return {"role": "tool", "tool_call_id": item.call_id, "content": "\n\n".join(texts) or "-"}


# -- output items -----------------------------------------------------------------------------
def _content(output: ShellOutput) -> dict[str, Any]:
    if output.timed_out:
        outcome: dict[str, Any] = {"type": "timeout"}
    else:  # a command that could not start has no code of its own: 1, its error in stderr
        code = 1 if output.exit_code is None else output.exit_code
        outcome = {"type": "exit", "exit_code": code}
    return {"stdout": output.stdout, "stderr": output.stderr, "outcome": outcome}


@dataclass
class ShellItems:
    count: int = 0
    _open: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)

    def announce(self, event: ShellCall, index: int, container: str) -> list[Piece]:
        """The shell_call item at `index`, whole, then its shell_call_output item opened at the
        next index (none for a call that will not run)."""
        if not event.runs:
            return []
        action: dict[str, Any] = {
            "commands": [],
            "timeout_ms": event.timeout_ms,
            "max_output_length": event.max_output_length,
        }
        item = {
            "id": new_id("sh"), "type": "shell_call", "call_id": event.call_id,
            "status": "in_progress", "action": action,
            "environment": {"type": "container_reference", "container_id": container},
        }  # fmt: skip
        pieces: list[Piece] = [
            ("response.output_item.added", {"output_index": index, "item": item})
        ]
        for number, command in enumerate(event.commands):
            at = {"output_index": index, "command_index": number}
            pieces += [
                ("response.shell_call_command.added", {**at, "command": ""}),
                ("response.shell_call_command.delta", {**at, "delta": command}),
                ("response.shell_call_command.done", {**at, "command": command}),
            ]
        done = {**item, "status": "completed", "action": {**action, "commands": event.commands}}
        output: dict[str, Any] = {
            "id": new_id("sho"), "type": "shell_call_output", "call_id": event.call_id,
            "status": "in_progress", "output": [], "max_output_length": event.max_output_length,
        }  # fmt: skip
        self._open[event.call_id] = (index + 1, output)
        return [
            *pieces,
            (DONE, {"output_index": index, "item": done}),
            ("response.output_item.added", {"output_index": index + 1, "item": output}),
        ]

    def command_done(self, event: ShellCommandDone) -> list[Piece]:
        found = self._open.get(event.call_id)
        if found is None:
            return []
        index, item = found
        content = _content(event.output)
        item["output"] = [*item["output"], content]
        where = {"item_id": item["id"], "output_index": index, "command_index": event.index}
        delta = {"stdout": event.output.stdout, "stderr": event.output.stderr}
        return [
            ("response.shell_call_output_content.delta", {**where, "delta": delta}),
            ("response.shell_call_output_content.done", {**where, "output": [content]}),
        ]

    def complete(self, event: ShellResult) -> list[Piece]:
        found = self._open.pop(event.call_id, None)
        if found is None:
            return []
        self.count += 1
        index, item = found
        return [(DONE, {"output_index": index, "item": {**item, "status": "completed"}})]

    def abandon(self) -> list[Piece]:
        """Output items of calls still running when the response ended: incomplete."""
        left = [
            (DONE, {"output_index": index, "item": {**item, "status": "incomplete"}})
            for index, item in self._open.values()
        ]
        self._open.clear()
        return left
