"""Output items of the Responses surface (docs/conformance/responses.md, output items): ids, parts,
and a code call's `outputs` made from an Execution (docs/conformance/outputs.md, responses outputs).
"""

from __future__ import annotations

import secrets
from typing import Any

from engine.models import DisplayOutput, ResultOutput, StreamOutput, TruncationMarker
from engine.orchestrator import ExecutionResult, error_text, image_mime, omitted_marker


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(16)}"


def summary(text: str) -> dict[str, Any]:
    return {"type": "summary_text", "text": text}


def text_part(text: str, annotations: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": annotations or [], "logprobs": []}


def message_item(
    item_id: str, status: str, text: str | None, annotations: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    content = [] if text is None else [text_part(text, annotations)]
    return {
        "id": item_id,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": content,
    }


def call_outputs(result: ExecutionResult) -> list[dict[str, Any]]:
    """A call's `outputs`: images first (as data URLs), then one `logs` item with the raw text
    (stdout, stderr, values, errors) in the order it was produced."""
    execution = result.execution
    if execution is None:  # a repeated call: the model was given the earlier result
        return [{"type": "logs", "logs": result.output}]
    images: list[dict[str, Any]] = []
    logs = ""
    for item in execution.outputs:
        if isinstance(item, StreamOutput):
            logs += item.text
        elif isinstance(item, TruncationMarker):
            logs += omitted_marker(item.omitted_bytes)
        elif isinstance(item, (DisplayOutput, ResultOutput)):
            mime = image_mime(item.data)
            if mime is not None:
                images.append({"type": "image", "url": f"data:{mime};base64,{item.data[mime]}"})
            elif "text/plain" in item.data:
                logs = _line(logs, item.data["text/plain"])
    if execution.error is not None:
        logs = _line(logs, error_text(execution.error))
    return [*images, {"type": "logs", "logs": logs}]


def _line(text: str, addition: str) -> str:
    """`addition` on a line of its own after `text`."""
    return f"{text}\n{addition}" if text and not text.endswith("\n") else text + addition
