"""The tool loop's settings that more than one layer offers (the loop's per-request options,
`lci serve`'s options, `lci chat`'s flags), each spelled once: its type, bounds, default and
meaning live here, and every layer declares its field with these."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field

MAX_ROUNDS = 20  # Qwen-Agent's bound
DEADLINE_S = 600.0


def _on_off(value: Any) -> Any:
    """`on`/`off`, as flags and environment variables spell them, are true and false."""
    return {"on": True, "off": False}.get(value, value) if isinstance(value, str) else value


MaxRounds = Annotated[int, Field(ge=1, description="Model calls per request (Qwen-Agent: 20).")]
OnMaxRounds = Annotated[
    Literal["final_call", "stop"],
    Field(
        description="final_call: the last permitted round is sent without tools and asks for the "
        "answer; stop: end with finish_reason length if it still wants to run code."
    ),
]
LoopDeadline = Annotated[float, Field(gt=0, description="Wall time of one request's tool loop.")]
PythonBlocks = Annotated[
    bool | Literal["auto"],
    BeforeValidator(_on_off),
    Field(
        description="Also run fenced ```python blocks of the model's text as calls (on/off). auto: "
        "until the model makes a native tool call (a model that has one shows code, not calls, "
        "in python blocks)."
    ),
]
