"""Turning a cell that ended into its `Execution`: what the agent's done frame reported, the error
that explains how it ended (the cell's own, or a timeout, interrupt, kill or crash), and its output
within the session's budget."""

from __future__ import annotations

import time
from typing import Any

from engine.core.output import clip_text
from engine.core.running_cell import RunningCell
from engine.core.sandbox import ExitInfo
from engine.models import ErrorInfo, Execution, Outcome, ResultOutput

_LOST = "the interpreter was restarted and its state lost"


def execution_of(
    run: RunningCell,
    outcome: Outcome | None,
    exit_info: ExitInfo | None,
    session_id: str,
    execution_count: int,
) -> Execution:
    """The record of `run`. `outcome` is None when the cell finished by itself (completed or
    error, by its done frame); `exit_info` says how the sandbox ended when it was killed."""
    error = _from_frame(run)
    if outcome is None:
        outcome = Outcome.ERROR if error else Outcome.COMPLETED
    elif outcome is Outcome.INTERRUPTED:
        error = error or _interrupted(run)  # its KeyboardInterrupt's traceback, when it has one
    else:
        error = _ended(run, outcome, exit_info) or error
    run.output.flush_decoders()
    return Execution(
        id=run.id,
        session_id=session_id,
        outcome=outcome,
        stdout=run.output.text("stdout"),
        stderr=run.output.text("stderr"),
        outputs=run.output.items(),
        error=error,
        state_preserved=outcome not in (Outcome.KILLED, Outcome.CRASHED),
        duration_ms=(time.monotonic() - run.started) * 1000,
        truncated=run.output.truncated,
        limits=run.limits,
        execution_count=execution_count,
    )


def _from_frame(run: RunningCell) -> ErrorInfo | None:
    """The result and the error the agent's done frame carries (nothing if none arrived)."""
    frame: dict[str, Any] = run.frame or {}
    if isinstance(frame.get("result"), dict):
        run.output.add_display(ResultOutput(data=str_dict(frame["result"])))
    if isinstance(frame.get("omitted"), int) and frame["omitted"] > 0:
        run.output.omitted += frame["omitted"]  # cut by the agent before it was sent
    if frame.get("status") != "error" or not isinstance(frame.get("error"), dict):
        return None
    raw, budget = frame["error"], run.limits.output_bytes
    value, cut_value = clip_text(str(raw.get("value", "")), budget)
    trace, cut_trace = clip_text(str(raw.get("traceback", "")), budget)
    run.output.omitted += cut_value + cut_trace
    return ErrorInfo(name=str(raw.get("name", "Error"))[:200], value=value, traceback=trace)


def _ended(run: RunningCell, outcome: Outcome, exit_info: ExitInfo | None) -> ErrorInfo | None:
    """The error of a cell whose interpreter was killed or crashed (None: a crash not described)."""
    if outcome is Outcome.KILLED and run.poked:
        return ErrorInfo(name="Interrupted", value="restarted by the caller; state lost")
    if outcome is Outcome.KILLED:
        value = (
            f"execution exceeded {run.limits.timeout_s:g} s and did not stop when interrupted; "
            f"{_LOST}"
        )
        return ErrorInfo(name="TimeoutError", value=value)
    if exit_info is not None and exit_info.broken:
        value = f"the cell broke the interpreter ({exit_info.broken}); {_LOST}"
        return ErrorInfo(name="SandboxCrashed", value=value)
    if exit_info is not None:
        return ErrorInfo(name="SandboxCrashed", value=f"{exit_info.describe()}; {_LOST}")
    return None


def _interrupted(run: RunningCell) -> ErrorInfo:
    if run.poked:
        return ErrorInfo(name="KeyboardInterrupt", value="interrupted by the caller")
    value = f"execution exceeded {run.limits.timeout_s:g} s and was interrupted"
    return ErrorInfo(name="TimeoutError", value=value)


def str_dict(data: dict[str, Any]) -> dict[str, str]:
    """A MIME bundle from the agent with every value a string."""
    return {str(k): v if isinstance(v, str) else str(v) for k, v in data.items()}
