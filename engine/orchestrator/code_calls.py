"""One code_interpreter call inside the loop: refuse what may not run (code cut off by the token
limit, a call without code, a repeat the loop guard answers from memory), run the rest in the
conversation's session within the request's deadline, and append the tool message. Yields
`code_start` (unless the round announced it live), `code_complete`, then `execution_result`
(see `events`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Literal

from engine.models import Execution
from engine.orchestrator.calls import ToolCall
from engine.orchestrator.code_runner import CodeRunner
from engine.orchestrator.events import CodeComplete, CodeStart, Event, ExecutionResult
from engine.orchestrator.round import Round
from engine.orchestrator.run_state import DeadlineExceeded, RunState
from engine.orchestrator.shell import SHELL_TOOL
from engine.orchestrator.tool import (
    CUT_OFF_TEXT,
    ToolOutput,
    invalid_call_text,
    render_execution,
    repeated_call_text,
)

# An execution gets the session's own timeout; when the deadline comes first, this much more lets
# the session's timeout ladder (interrupt, grace, kill) finish before the loop gives up on it.
_EXEC_GRACE_S = 5.0


async def run_code_call(
    runner: CodeRunner, state: RunState, rnd: Round, call: ToolCall
) -> AsyncGenerator[Event, None]:
    """Raises DeadlineExceeded when the deadline passes before or while the code runs."""
    if call.id not in rnd.announced:
        yield CodeStart(round=rnd.number, call_id=call.id)
    code = None if call.cut_off else call.code
    earlier = state.guard.earlier(code) if code is not None else None
    runs = code is not None and earlier is None
    yield CodeComplete(round=rnd.number, call_id=call.id, code=call.code or "", runs=runs)
    execution = None
    status: Literal["executed", "repeated", "invalid"]
    if call.cut_off:
        status, output = "invalid", ToolOutput(CUT_OFF_TEXT)
        state.guard.refused()
    elif call.code is None:
        others = (*state.web_tools, SHELL_TOOL) if state.shell else state.web_tools
        text = invalid_call_text(call.name, call.problem, others)
        status, output = "invalid", ToolOutput(text)
    elif earlier is not None:
        text = repeated_call_text(earlier.output, failed=earlier.failed, last=earlier.last)
        status, output = "repeated", ToolOutput(text)
        state.guard.refused(earlier)
    else:
        status = "executed"
        execution = await _execute(runner, state, call.code)
        output, state.figure = render_execution(
            execution,
            budget_bytes=state.options.result_budget_bytes,
            images=state.options.images,
            figure=state.figure,
        )
        state.guard.executed(call.code, output.text, execution)
    state.messages.append(output.message(call.id))
    yield ExecutionResult(
        round=rnd.number,
        call_id=call.id,
        code=call.code or "",
        status=status,
        execution=execution,
        output=output.text,
    )


async def _execute(runner: CodeRunner, state: RunState, code: str) -> Execution:
    # Without exec_timeout_s the session's own timeout_s applies; the time left before the
    # deadline only caps it (it is no per-execution limit: a model's infinite loop would
    # hold the request until the deadline).
    left = guard = None
    if state.deadline is not None:
        left = state.deadline - asyncio.get_running_loop().time()
        if left <= 0:
            raise DeadlineExceeded
        guard = state.deadline + _EXEC_GRACE_S
    state.executions += 1
    try:
        async with asyncio.timeout_at(guard):
            return await runner.execute(
                state.conversation_id,
                code,
                timeout_s=state.options.exec_timeout_s,
                max_timeout_s=left,
            )
    except TimeoutError:
        raise DeadlineExceeded from None
