"""Per-request settings of the tool loop."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from engine.loop_settings import (
    DEADLINE_S,
    MAX_ROUNDS,
    LoopDeadline,
    MaxRounds,
    OnMaxRounds,
    PythonBlocks,
)
from engine.orchestrator.tool import DEFAULT_SYSTEM_PROMPT, ImageMode


class LoopOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(
        default=None, description="Upstream model name (default: the orchestrator's)."
    )
    max_rounds: MaxRounds = MAX_ROUNDS
    on_max_rounds: OnMaxRounds = "final_call"
    tool_choice: Literal["auto", "required"] = Field(
        default="auto",
        description="The first round's tool_choice (required: the model must run code once); "
        "later rounds are auto.",
    )
    deadline_s: LoopDeadline | None = DEADLINE_S
    exec_timeout_s: float | None = Field(
        default=None,
        gt=0,
        description="Wall time per execution (default: the session's timeout_s); the deadline "
        "bounds the whole request.",
    )
    system_prompt: str | None = Field(
        default=DEFAULT_SYSTEM_PROMPT,
        description="Prepended when the conversation has no system message of its own; None: none.",
    )
    text_calls: bool = Field(
        default=True, description="Recognise calls written in the model's text."
    )
    python_blocks: PythonBlocks = False
    images: ImageMode = Field(
        default="placeholder",
        description="parts: images go to the model as image_url content parts.",
    )
    result_budget_bytes: int = Field(
        default=16_000, ge=256, description="Size cap of one tool result sent to the model."
    )
    stream_retries: int = Field(
        default=1,
        ge=0,
        description="Retries of a round whose stream broke off before anything was shown.",
    )
    max_repeats: int = Field(
        default=3,
        ge=1,
        description="Strikes before a forced final answer: a call repeating an earlier one (not "
        "run again), a near-identical call, an error seen before.",
    )
    max_failures: int = Field(
        default=5, ge=1, description="Failed executions before a forced final answer."
    )
    answer_after_repeat: bool = Field(
        default=True,
        description="A call repeating an earlier successful one is not run and forces the final "
        "answer at once (the model has the result; small models otherwise wander off).",
    )
    retry_temperature: float | None = Field(
        default=0.7,
        ge=0,
        description="A round whose calls all repeat code that failed, or whose code the model "
        "server cut off at its token limit, is asked again, without it in the conversation, at "
        "this temperature (or the request's, if higher): a greedy model sends the same failing "
        "code however it is told, and repeats itself into the limit again. The refused round "
        "still counts toward max_repeats. None: the refusal stays in the conversation.",
    )
    web_tools: list[Literal["web_search", "web_extractor"]] = Field(
        default_factory=list,
        description="Web tools offered beside the code interpreter, among those the orchestrator "
        "has providers for.",
    )
    code_interpreter: bool = Field(
        default=True,
        description="Offer the code_interpreter tool (False: only the other tools offered).",
    )
    shell: bool = Field(
        default=False,
        description="Offer the shell tool (its commands run in the same session as the code), "
        "if the orchestrator has a command runner.",
    )
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="Extra upstream request fields: temperature, max_tokens, chat_template_kwargs.",
    )
