"""What one run of the loop carries from round to round, shared by the loop driver and the
handlers of its tool calls."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.orchestrator.events import ErrorEvent, Usage
from engine.orchestrator.loop_guard import LoopGuard
from engine.orchestrator.options import LoopOptions
from engine.orchestrator.web.calls import WebState


class DeadlineExceeded(Exception):
    """The request's deadline passed; `Orchestrator.run` turns it into its `ErrorEvent`."""


@dataclass
class RunState:
    conversation_id: str
    options: LoopOptions
    messages: list[dict[str, Any]]
    deadline: float | None
    guard: LoopGuard
    rounds: int = 0
    executions: int = 0
    usage: Usage = field(default_factory=Usage)
    figure: int = 0
    native_seen: bool = False  # the model made a native tool call in this conversation
    retrying: bool = False  # this round asks again for one whose every call was refused
    reasked: int = 0  # rounds asked again so far (the seed offset of a retry)
    web_tools: tuple[str, ...] = ()  # the web tools offered in this run
    shell: bool = False  # the shell tool is offered in this run
    shell_calls: int = 0  # shell calls whose commands ran
    web: WebState = field(init=False)

    def __post_init__(self) -> None:
        self.web = WebState(self.options.result_budget_bytes, self.deadline, self.guard.refused)

    def error(self, code: str, message: str, status: int | None = None) -> ErrorEvent:
        return ErrorEvent(
            code=code,
            message=message,
            status=status,
            rounds=self.rounds,
            executions=self.executions,
            usage=self.usage,
        )
