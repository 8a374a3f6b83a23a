"""The `shell` tool as the model sees it: its definition, reading a call's arguments (a list of
commands, an optional timeout and output limit, as OpenAI's hosted shell takes them), the
`CommandRunner` protocol its commands run through, and the text their results become for the model.

Each command runs on its own (`bash -l -c`) in the conversation's session, beside the interpreter:
the same sandbox, user and working directory, so files are shared with the code interpreter; a
`cd` or a variable does not carry over from one command to the next.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

from engine.command_models import CommandResult
from engine.orchestrator.calls import loads_lenient
from engine.orchestrator.events import ShellOutput

SHELL_TOOL = "shell"
MAX_COMMANDS = 32  # per call; more is refused (the model is told to split them)
_MAX_TIMEOUT_MS = 24 * 3600 * 1000

SHELL_DEFINITION: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": SHELL_TOOL,
        "description": "Run shell commands (bash) in the sandbox's working directory, one after "
        "another; each command's stdout, stderr and exit code come back.",
        "parameters": {
            "type": "object",
            "properties": {
                "commands": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "The shell commands to run, in order.",
                },
                "timeout_ms": {
                    "type": "integer",
                    "description": "Time limit of each command in milliseconds (optional).",
                },
            },
            "required": ["commands"],
        },
    },
}

SHELL_PROMPT = (
    "You can run shell commands in a sandbox with the `shell` tool: give it a list of commands; "
    "each runs on its own in the same working directory, so files persist but `cd` and variables "
    "do not carry over to the next command."
)
SHELL_ONLY_PROMPT = (
    "You are a helpful assistant with a sandboxed Linux shell. "
    + SHELL_PROMPT
    + " Once a result answers the question, reply to the user with the final answer in plain text."
)


class CommandRunner(Protocol):
    async def run_command(
        self,
        conversation_id: str,
        command: str,
        *,
        timeout_s: float | None = None,
        max_timeout_s: float | None = None,
    ) -> CommandResult:
        """Run the shell command line `command` in the session of `conversation_id` (the one its
        code runs in, started now if it has none) and return how it ended. Its time limit is
        `timeout_s`, else the session's own; `max_timeout_s` caps either. A command that fails,
        cannot start or times out is a result (`exit_code`, `error`, `timed_out`), not an
        exception; cancelling the caller kills it. Session-level failures raise
        `engine.errors.LCIError`."""
        ...


@dataclass
class ShellAction:
    commands: list[str]
    timeout_ms: int | None = None
    max_output_length: int | None = None


def read_shell_call(arguments: str) -> tuple[ShellAction | None, str | None]:
    """(action, None) when the arguments hold commands, else (None, problem). Read leniently: a
    lone string is one command; `command` is taken for `commands`."""
    value: Any = loads_lenient(arguments) if arguments.strip().startswith("{") else arguments
    if isinstance(value, str):
        value = {"commands": [value]} if value.strip() else {}
    if not isinstance(value, dict):
        return None, "the arguments are not a JSON object"
    commands = value.get("commands", value.get("command"))
    if isinstance(commands, str):
        commands = loads_lenient(commands) if commands.strip().startswith("[") else [commands]
    if not isinstance(commands, list) or not all(isinstance(c, str) for c in commands):
        return None, 'no "commands" list of strings in the arguments'
    commands = [c for c in commands if c.strip()]
    if not commands:
        return None, "there are no commands"
    if len(commands) > MAX_COMMANDS:
        return None, f"a call may run at most {MAX_COMMANDS} commands"
    return ShellAction(commands, _positive(value.get("timeout_ms"), _MAX_TIMEOUT_MS),
                       _positive(value.get("max_output_length"), None)), None  # fmt: skip


def _positive(value: Any, cap: int | None) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        return None
    return int(min(value, cap)) if cap is not None else int(value)


def invalid_shell_text(problem: str | None) -> str:
    return (
        f"Error: the arguments of this call could not be read ({problem}). Call `{SHELL_TOOL}` "
        'again with a JSON object such as {"commands": ["ls -la"]}.'
    )


def cap_output(stdout: str, stderr: str, limit: int | None) -> tuple[str, str]:
    """stdout and stderr cut to `limit` characters together (None: as they are); each keeps its
    head and tail around a marker, stderr at least half of the room when it needs it."""
    if limit is None or len(stdout) + len(stderr) <= limit:
        return stdout, stderr
    err = min(len(stderr), max(limit // 2, limit - len(stdout)))
    out = min(len(stdout), limit - err)
    return _cut(stdout, out), _cut(stderr, limit - out)


def _cut(text: str, room: int) -> str:
    if len(text) <= room:
        return text
    marker = f"\n[... {len(text) - room} characters omitted ...]\n"
    if room <= len(marker):
        return text[:room]
    keep = room - len(marker)
    return text[: keep - keep // 2] + marker + (text[len(text) - keep // 2 :] if keep // 2 else "")


def command_text(output: ShellOutput, *, truncated: bool = False) -> str:
    """One command's result as the model reads it."""
    parts = [f"$ {output.command}"]
    if output.stdout:
        parts.append(f"stdout:\n```\n{output.stdout.rstrip(chr(10))}\n```")
    if output.stderr:
        parts.append(f"stderr:\n```\n{output.stderr.rstrip(chr(10))}\n```")
    if truncated:
        parts.append("(The output passed the session's output limit and was cut.)")
    if output.timed_out:
        parts.append("Timeout: the command ran past its time limit and was killed.")
    elif output.exit_code is None:
        parts.append("The command did not run.")
    else:
        parts.append(f"exit code: {output.exit_code}")
    return "\n".join(parts)


def shell_message(call_id: str, text: str) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": text}


def action_arguments(action: ShellAction) -> str:
    """The call's arguments as JSON, as the conversation records them."""
    data: dict[str, Any] = {"commands": action.commands}
    if action.timeout_ms is not None:
        data["timeout_ms"] = action.timeout_ms
    if action.max_output_length is not None:
        data["max_output_length"] = action.max_output_length
    return json.dumps(data)
