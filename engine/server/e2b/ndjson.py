"""lci's execution output as the lines of E2B's `/execute` stream (newline-delimited JSON).

    {"type": "stdout" | "stderr", "text", "timestamp": <unix ns>}
    {"type": "result", "text", "png", "html", ..., "extra", "is_main_result"}
    {"type": "error", "name", "value", "traceback"}
    {"type": "number_of_executions", "execution_count"}
    {"type": "end_of_execution"}

A result carries one field per MIME type it has (E2B's names); MIME types without a field go into
`extra`. `json`, `data` (a DataFrame's table, from `e2b/data`) and `chart` (a figure's chart, from
`e2b/chart`) are JSON values. `is_main_result` marks the value of the cell's last expression;
displays (figures) are results without it.
"""

from __future__ import annotations

import json
import time
from typing import Any

from engine.models import (
    DisplayOutput,
    Execution,
    Outcome,
    OutputItem,
    ResultOutput,
    StreamOutput,
    TruncationMarker,
)

# MIME type -> the field of E2B's `Result`
FIELDS = {
    "text/plain": "text",
    "text/html": "html",
    "text/markdown": "markdown",
    "image/svg+xml": "svg",
    "image/png": "png",
    "image/jpeg": "jpeg",
    "application/pdf": "pdf",
    "text/latex": "latex",
    "application/json": "json",
    "application/javascript": "javascript",
    "e2b/data": "data",  # a DataFrame's table, {"column": [values...]}
    "e2b/chart": "chart",  # a figure's chart (E2B's schema, engine/agent/charts.py)
}
_JSON_FIELDS = frozenset({"json", "data", "chart"})  # sent as JSON values, not strings


def line(payload: dict[str, Any]) -> str:
    return json.dumps(payload, ensure_ascii=False) + "\n"


def item_line(item: OutputItem) -> str:
    if isinstance(item, StreamOutput):
        return line({"type": item.name, "text": item.text, "timestamp": time.time_ns()})
    if isinstance(item, TruncationMarker):
        note = f"[{item.omitted_bytes} bytes of output omitted]\n"
        return line({"type": "stderr", "text": note, "timestamp": time.time_ns()})
    return line(result(item))


def result(item: DisplayOutput | ResultOutput) -> dict[str, Any]:
    fields: dict[str, Any] = {"type": "result", "is_main_result": isinstance(item, ResultOutput)}
    extra: dict[str, Any] = {}
    for mime, value in item.data.items():
        name = FIELDS.get(mime)
        if name is None:
            extra[mime] = value
        elif name in _JSON_FIELDS:
            fields[name] = _json(value)
        elif name == "text":
            fields[name] = _unquoted(value)
        else:
            fields[name] = value
    if extra:
        fields["extra"] = extra
    return fields


def error_line(execution: Execution) -> str:
    """The execution's error. A cell interrupted at lci's time limit is a `TimeoutError` naming
    the limit (E2B's SDK reports its own execution timeout as a `TimeoutException`; the bare
    `KeyboardInterrupt` the cell got says neither why nor what to change)."""
    error = execution.error
    assert error is not None
    name, value = error.name, error.value
    if execution.outcome is Outcome.INTERRUPTED and name == "KeyboardInterrupt":
        name = "TimeoutError"
        value = (
            f"the cell ran past lci's time limit of {execution.limits.timeout_s:g} s "
            "(timeout_s) and was interrupted; variables are kept. run_code(timeout=...) cannot "
            "extend it: the server's limits can (LCI_LIMITS)"
        )
    return line({"type": "error", "name": name, "value": value, "traceback": error.traceback})


def end_lines(execution_count: int) -> str:
    return line({"type": "number_of_executions", "execution_count": execution_count}) + line(
        {"type": "end_of_execution"}
    )


def _unquoted(text: str) -> str:
    """E2B shows a string result without its repr quotes ('abc' -> abc), as Jupyter's server does."""
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def _json(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value
