"""One shell call inside the loop: read its commands, run them one after another in the
conversation's session within the request's deadline, and append the tool message. Yields
`shell_call`, one `shell_command_done` per command, then `shell_result` (see `events`).

A call of another tool where only the shell is offered (the code interpreter is not) runs nothing:
it is answered with an error naming the tools there are."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from engine import observe
from engine.orchestrator.calls import ToolCall
from engine.orchestrator.events import Event, ShellCall, ShellCommandDone, ShellOutput, ShellResult
from engine.orchestrator.run_state import DeadlineExceeded, RunState
from engine.orchestrator.shell import (
    SHELL_TOOL,
    CommandRunner,
    ShellAction,
    cap_output,
    command_text,
    invalid_shell_text,
    read_shell_call,
    shell_message,
)
from engine.orchestrator.tool import clip

# As for code: the command's own timeout is capped by the deadline; this much more lets the
# service kill it and report before the loop gives up on it.
_GRACE_S = 5.0


async def run_shell_call(
    runner: CommandRunner, state: RunState, round_number: int, call: ToolCall
) -> AsyncGenerator[Event, None]:
    """Raises DeadlineExceeded when the deadline passes before or while a command runs."""
    action, problem = read_shell_call(call.arguments)
    ids = {"round": round_number, "call_id": call.id}
    if action is None:
        yield ShellCall(**ids, runs=False)
        text = invalid_shell_text(problem)
        state.messages.append(shell_message(call.id, text))
        yield ShellResult(**ids, status="invalid", output=text)
        return
    yield ShellCall(
        **ids,
        commands=action.commands,
        timeout_ms=action.timeout_ms,
        max_output_length=action.max_output_length,
    )
    outputs: list[ShellOutput] = []
    texts: list[str] = []
    for index, command in enumerate(action.commands):
        output, text = await _run(runner, state, action, command)
        outputs.append(output)
        texts.append(text)
        yield ShellCommandDone(**ids, index=index, output=output)
    state.shell_calls += 1
    text = clip("\n\n".join(texts), state.options.result_budget_bytes)
    state.messages.append(shell_message(call.id, text))
    yield ShellResult(**ids, status="completed", outputs=outputs, output=text)


async def _run(
    runner: CommandRunner, state: RunState, action: ShellAction, command: str
) -> tuple[ShellOutput, str]:
    left = guard = None
    if state.deadline is not None:
        left = state.deadline - asyncio.get_running_loop().time()
        if left <= 0:
            raise DeadlineExceeded
        guard = state.deadline + _GRACE_S
    timeout = action.timeout_ms / 1000 if action.timeout_ms is not None else None
    try:
        with observe.span("shell.command"):
            async with asyncio.timeout_at(guard):
                result = await runner.run_command(
                    state.conversation_id, command, timeout_s=timeout, max_timeout_s=left
                )
    except TimeoutError:
        raise DeadlineExceeded from None
    stdout, stderr = cap_output(result.stdout, result.stderr, action.max_output_length)
    if result.exit_code is None and not result.timed_out and result.error:
        stderr += ("\n" if stderr and not stderr.endswith("\n") else "") + result.error
    output = ShellOutput(
        command=command,
        stdout=stdout,
        stderr=stderr,
        exit_code=None if result.timed_out else result.exit_code,
        timed_out=result.timed_out,
    )
    return output, command_text(output, truncated=result.truncated)


def refuse_call(state: RunState, round_number: int, call: ToolCall) -> list[Event]:
    """A call of a tool that is not offered, where the shell is the only tool."""
    others = ", ".join(f"`{name}`" for name in (SHELL_TOOL, *state.web_tools))
    text = f"Error: there is no tool named {call.name!r}. The tools are {others}."
    state.messages.append(shell_message(call.id, text))
    ids = {"round": round_number, "call_id": call.id}
    return [ShellCall(**ids, runs=False), ShellResult(**ids, status="invalid", output=text)]
