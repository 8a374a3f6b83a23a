"""Typed events yielded by the tool loop, so the server can render any wire format and the CLI can
print live.

Ordering contract of one `Orchestrator.run`:

    (round_start (reasoning_delta | text_delta | code_start)* usage?
       (code_complete execution_result | web_call web_result
        | shell_call shell_command_done* shell_result)*)+   final | error

* Every round opens with `round_start`; deltas of a round come before its `usage`.
* Each `code_start` is followed, after the round's stream ended, by exactly one `code_complete` and
  then one `execution_result` with the same `call_id`, in the order the model made the calls.
* A call of a web tool (web_search, web_extractor) is one `web_call`, then one `web_result` with
  the same `call_id`, in the same place (they are never announced by `code_start`).
* A call of the shell tool is one `shell_call`, one `shell_command_done` per command run (in
  order, as each ends), then one `shell_result` with the same `call_id`, in the same place.
* The run ends with exactly one terminal event: `final` or `error`. Both carry the aggregated usage
  and the number of code executions.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from engine.models import Execution


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Usage(_Event):
    """Token usage of one round, or the sum over rounds (docs/conformance/common.md, usage)."""

    input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cached_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            reasoning_tokens=self.reasoning_tokens + other.reasoning_tokens,
            cached_tokens=self.cached_tokens + other.cached_tokens,
        )


class RoundStart(_Event):
    type: Literal["round_start"] = "round_start"
    round: int
    final_call: bool = Field(
        False, description="This round is sent without tools, asking for the answer."
    )


class ReasoningDelta(_Event):
    type: Literal["reasoning_delta"] = "reasoning_delta"
    round: int
    text: str


class TextDelta(_Event):
    """Visible assistant text. Tool-call markup recognised in text is never sent as a delta."""

    type: Literal["text_delta"] = "text_delta"
    round: int
    text: str


class CodeStart(_Event):
    """The model began a code_interpreter call (its code may still be streaming)."""

    type: Literal["code_start"] = "code_start"
    round: int
    call_id: str


class CodeComplete(_Event):
    """The call's code is known. `code` is empty when the call's arguments could not be read."""

    type: Literal["code_complete"] = "code_complete"
    round: int
    call_id: str
    code: str
    runs: bool = Field(
        True,
        description="False when the call will not be executed (a repeat of an earlier call, or "
        "unreadable arguments): its result comes from lci, not from running code.",
    )


class ExecutionResult(_Event):
    """What became of one call.

    status: `executed` (the code ran; `execution` says how it ended, including errors and
    timeouts), `repeated` (identical to the previous call, not run again), `invalid` (unreadable
    arguments or an unknown tool name; nothing ran). `output` is exactly the text fed back to the
    model.
    """

    type: Literal["execution_result"] = "execution_result"
    round: int
    call_id: str
    code: str
    status: Literal["executed", "repeated", "invalid"]
    execution: Execution | None = None
    output: str


class WebSource(_Event):
    """A search hit, or the page a web_extractor call read."""

    title: str
    url: str
    snippet: str = ""


class WebCall(_Event):
    """The model called a web tool; its arguments are known. `runs` is False when lci answers it
    without running it (a repeat, unreadable arguments, the request's page limit reached)."""

    type: Literal["web_call"] = "web_call"
    round: int
    call_id: str
    tool: Literal["web_search", "web_extractor"]
    query: str | None = None
    url: str | None = None
    runs: bool = True


class WebResult(_Event):
    """What became of one web call. status: `completed` (the provider answered), `failed` (it
    ran but failed: the search service, a refused or unreachable URL, a timeout), `repeated`,
    `invalid` or `limit` (nothing ran). `sources`: the hits, or the page read. `output` is
    exactly the text fed back to the model."""

    type: Literal["web_result"] = "web_result"
    round: int
    call_id: str
    tool: Literal["web_search", "web_extractor"]
    query: str | None = None
    url: str | None = None
    status: Literal["completed", "failed", "repeated", "invalid", "limit"]
    sources: list[WebSource] = Field(default_factory=list)
    output: str

    @property
    def ran(self) -> bool:
        return self.status in ("completed", "failed")


class ShellOutput(_Event):
    """How one shell command ended: its output (cut to the call's `max_output_length`), and its
    exit code (negative: killed by that signal; None when it timed out or could not start)."""

    command: str
    stdout: str = ""
    stderr: str = ""
    exit_code: int | None = None
    timed_out: bool = False


class ShellCall(_Event):
    """The model called the shell tool; its arguments are known. `runs` is False when lci answers
    it without running anything (unreadable arguments)."""

    type: Literal["shell_call"] = "shell_call"
    round: int
    call_id: str
    commands: list[str] = Field(default_factory=list)
    timeout_ms: int | None = None
    max_output_length: int | None = None
    runs: bool = True


class ShellCommandDone(_Event):
    """Command `index` of a shell call ended."""

    type: Literal["shell_command_done"] = "shell_command_done"
    round: int
    call_id: str
    index: int
    output: ShellOutput


class ShellResult(_Event):
    """What became of one shell call: `completed` (its commands ran, whatever their exit codes),
    `invalid` (nothing ran). `output` is exactly the text fed back to the model."""

    type: Literal["shell_result"] = "shell_result"
    round: int
    call_id: str
    status: Literal["completed", "invalid"]
    outputs: list[ShellOutput] = Field(default_factory=list)
    output: str


class UsageEvent(_Event):
    type: Literal["usage"] = "usage"
    round: int
    usage: Usage
    total: Usage = Field(description="Aggregated over all rounds so far.")


class Final(_Event):
    """The answer, never empty. finish_reason `length` means it was cut short: `incomplete` says
    whether by the model server's token limit (`max_tokens`) or by the round cap with
    on_max_rounds=stop (`max_rounds`). `fallback`: the model gave no answer (an empty reply, or a
    call where none could run), so the text is lci's, quoting the last code result. `forced`: why
    the last round was a forced final one (the round cap, a loop of repeats, too many errors)."""

    type: Literal["final"] = "final"
    text: str
    finish_reason: Literal["stop", "length"] = "stop"
    incomplete: Literal["max_tokens", "max_rounds"] | None = None
    fallback: bool = False
    forced: Literal["max_rounds", "repeats", "errors"] | None = None
    rounds: int
    executions: int
    usage: Usage


class ErrorEvent(_Event):
    """The loop could not finish. code: `upstream_error` (the model server failed; `status` is its
    HTTP status when it sent one), `deadline_exceeded`, or an `LCIError.code` of the runner."""

    type: Literal["error"] = "error"
    code: str
    message: str
    status: int | None = None
    rounds: int
    executions: int
    usage: Usage


Event = Annotated[
    RoundStart
    | ReasoningDelta
    | TextDelta
    | CodeStart
    | CodeComplete
    | ExecutionResult
    | WebCall
    | WebResult
    | ShellCall
    | ShellCommandDone
    | ShellResult
    | UsageEvent
    | Final
    | ErrorEvent,
    Field(discriminator="type"),
]
