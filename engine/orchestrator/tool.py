"""The `code_interpreter` tool as the model sees it: its definition, the default system prompt, and
the text an execution is turned into before it goes back to the model.

Definition and result format follow what Qwen models are trained on (Qwen-Agent's CodeInterpreter;
docs/conformance/upstream.md, the tool definition; docs/conformance/outputs.md, tool result text):
each output is a labelled fenced block (`stdout:`, `stderr:`, `execute_result:`, `display_data:`,
`error:`), an execution without output is `Finished execution.`
"""

from __future__ import annotations

import base64
import re
import struct
from dataclasses import dataclass, field
from typing import Any, Literal

from engine.models import (
    DisplayOutput,
    ErrorInfo,
    Execution,
    Outcome,
    ResultOutput,
    StreamOutput,
    TruncationMarker,
)

from .chart_text import chart_line

TOOL_NAME = "code_interpreter"

TOOL_DEFINITION: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": TOOL_NAME,
        "description": "Python code sandbox, which can be used to execute Python code.",
        "parameters": {
            "type": "object",
            "properties": {"code": {"description": "The python code.", "type": "string"}},
            "required": ["code"],
        },
    },
}

DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful assistant with a Python code interpreter. When a question needs "
    "calculation, data processing or checking something by running code, call the "
    "`code_interpreter` tool with the Python code to run. The code runs in a persistent session: "
    "variables, imports and files stay available between calls. The value of the last expression "
    "is shown, and so is anything printed. If the code fails, fix it and call the tool again. "
    "Once a tool result answers the question, do not call the tool again: reply to the user with "
    "the final answer in plain text."
)

# Ends the result of code that raised: a small model shown only the traceback sends the same code
# again far more often.
FAILED_NOTE = "The code failed: correct it and call the tool again with the corrected code."

ImageMode = Literal["placeholder", "parts"]
_IMAGE_TYPES = ("image/png", "image/jpeg")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
NO_OUTPUT = "Finished execution."


@dataclass
class ToolOutput:
    """One tool result: the text fed back, and images as data URLs (only in `parts` mode)."""

    text: str
    images: list[str] = field(default_factory=list)

    def message(self, call_id: str) -> dict[str, Any]:
        """The `role: tool` message answering call `call_id`."""
        content: str | list[dict[str, Any]] = self.text
        if self.images:
            content = [{"type": "text", "text": self.text}] + [
                {"type": "image_url", "image_url": {"url": url}} for url in self.images
            ]
        return {"role": "tool", "tool_call_id": call_id, "content": content}


@dataclass
class _Renderer:
    mode: ImageMode
    figure: int
    sections: list[tuple[str, str]] = field(default_factory=list)
    images: list[str] = field(default_factory=list)

    def add(self, label: str, text: str) -> None:
        if self.sections and self.sections[-1][0] == label != "image":
            self.sections[-1] = (label, self.sections[-1][1] + text)
        else:
            self.sections.append((label, text))

    def add_bundle(self, label: str, data: dict[str, str]) -> None:
        mime = image_mime(data)
        if mime is None:
            if "text/plain" in data:
                self.add(label, data["text/plain"])
            return
        self.figure += 1
        name = f"fig-{self.figure:03d}"
        size = _png_size(data[mime]) if mime == "image/png" else None
        desc = f"{size[0]}x{size[1]} " if size else ""
        kind = mime.split("/")[1].upper()
        chart = chart_line(data)  # what the figure shows, for a model that does not see it
        after = f"\n{chart}" if chart else ""
        if self.mode == "parts":
            self.images.append(f"data:{mime};base64,{data[mime]}")
            self.add("image", f"[image {name}: {desc}{kind}, attached]{after}")
        else:
            self.add("image", f"[image {name}: {desc}{kind}, shown to the user, not to you]{after}")


def render_execution(
    execution: Execution, *, budget_bytes: int, images: ImageMode = "placeholder", figure: int = 0
) -> tuple[ToolOutput, int]:
    """The tool result for one execution, cut to `budget_bytes` (head and tail kept, the cut
    marked), and the last figure number used (figures are numbered across a conversation)."""
    r = _Renderer(images, figure)
    for item in execution.outputs:
        if isinstance(item, StreamOutput):
            r.add(item.name, item.text)
        elif isinstance(item, TruncationMarker):
            label = r.sections[-1][0] if r.sections else "stdout"
            r.add(label, omitted_marker(item.omitted_bytes))
        elif isinstance(item, ResultOutput):
            r.add_bundle("execute_result", item.data)
        elif isinstance(item, DisplayOutput):
            r.add_bundle("display_data", item.data)
    lost = execution.outcome in (Outcome.KILLED, Outcome.CRASHED)
    if execution.error is not None and not lost:
        r.add("error", error_text(execution.error))
    text = "\n\n".join(_block(label, body) for label, body in r.sections)
    note = _note(execution)
    text = "\n\n".join(part for part in (text, note) if part) or NO_OUTPUT
    return ToolOutput(clip(text, budget_bytes), r.images), r.figure


def _block(label: str, body: str) -> str:
    if label == "image":
        return body
    return f"{label}:\n\n```\n{body.strip(chr(10))}\n```"


def _note(execution: Execution) -> str:
    limit = f"{execution.limits.timeout_s:g} s"
    lost = (
        "The interpreter was restarted: all variables, imports and definitions from earlier "
        "calls are lost (files in the working directory are kept). Re-create what you need."
    )
    # Small models run too slow code again unchanged (naive recursion for fib(90)) unless told.
    # Worded as what to do next: advice phrased for nobody in particular came back as the answer
    # ("the code is too slow, consider using a loop").
    slow = (
        "The code is too slow for this limit: write faster code (for example a loop instead of "
        "recursion, or a library function) and call the tool again with it."
    )
    if execution.outcome is Outcome.INTERRUPTED:
        return (
            f"Timeout: Code execution exceeded the time limit of {limit} and was interrupted. "
            f"Variables defined before the interruption are kept. {slow}"
        )
    if execution.outcome is Outcome.ERROR and _used_up_cpu(execution):
        return (
            f"Timeout: Code execution used up its CPU time limit of "
            f"{execution.limits.effective_cpu_s:g} s and was interrupted. "
            f"Variables defined before the interruption are kept. {slow}"
        )
    if execution.outcome is Outcome.KILLED:
        return (
            f"Timeout: Code execution exceeded the time limit of {limit} and was stopped. "
            f"{slow} {lost}"
        )
    if execution.outcome is Outcome.CRASHED:
        reason = execution.error.value if execution.error else "the sandbox exited"
        return f"The interpreter crashed ({reason}). {lost}"
    notes = []
    if not execution.state_preserved:
        notes.append(f"Note: before this code ran, the session had to be started anew. {lost}")
    if execution.outcome is Outcome.ERROR:
        notes.append(FAILED_NOTE)
    return "\n\n".join(notes)


def _used_up_cpu(execution: Execution) -> bool:
    """Whether the cell was stopped by its CPU-time allowance: with `cpu_s` equal to the timeout
    (the default), busy code meets that limit as often as the wall-clock one, and it is the same
    message for the model: too slow."""
    return execution.error is not None and execution.error.name == "CPUTimeExceeded"


def image_mime(data: dict[str, str]) -> str | None:
    """The image type of a display bundle, if it holds an image the model or a client can show."""
    return next((m for m in _IMAGE_TYPES if m in data), None)


def error_text(error: ErrorInfo) -> str:
    """An execution's error as plain text: the traceback without terminal colours, or, when
    there is none, the exception's name and value."""
    return _ANSI.sub("", error.traceback).strip() or f"{error.name}: {error.value}"


def omitted_marker(n: int) -> str:
    """What stands in for `n` bytes of output that were cut."""
    return f"\n[... {n} bytes of output omitted ...]\n"


def clip(text: str, budget_bytes: int) -> str:
    """`text` if it fits in `budget_bytes` of UTF-8, else its head and tail around a marker saying
    how much was cut. Never exceeds the budget and never splits a character."""
    data = text.encode()
    if len(data) <= budget_bytes:
        return text
    room = budget_bytes - len(omitted_marker(len(data)).encode())
    if room <= 0:
        return data[:budget_bytes].decode(errors="ignore")
    head = data[: room - room // 2].decode(errors="ignore")
    tail = data[len(data) - room // 2 :].decode(errors="ignore") if room // 2 else ""
    cut = len(data) - len(head.encode()) - len(tail.encode())
    return head + omitted_marker(cut) + tail


def repeated_call_text(previous: str, *, failed: bool, last: bool = True) -> str:
    which = "the previous call" if last else "an earlier call"
    if failed:
        return (
            f"This code is identical to {which}, which failed, so it was not run again: "
            f"it would fail the same way. The result was:\n\n{previous}\n\nFix the code before "
            "calling the tool again."
        )
    return (
        f"This code is identical to {which}, so it was not run again. Its result was:"
        f"\n\n{previous}\n\nUse this result to answer the user. Call the tool again only with "
        "different code."
    )


# Sent as the last message of a forced final round, which goes without tools: small models that
# are merely told `tool_choice: none` write a call anyway, and the answer comes back empty.
FINAL_INSTRUCTION = (
    "No more code can be run. Answer my question now in plain text, using the results of the "
    "code above and copying numbers from them exactly. If they do not give the answer, say that "
    "it could not be computed. Do not write any code or tool call."
)


# The forced final round when every execution failed: told only to answer from the results, a small
# model makes a number up (a "90th Fibonacci number" of 2584 after three timeouts).
NOTHING_WORKED_INSTRUCTION = (
    "No more code can be run, and none of the code above worked, so there is no result to answer "
    "from. Tell me in plain text that the answer could not be computed, and why. Do not guess "
    "the answer. Do not write any code or tool call."
)

# A call the model server cut off at its token limit mid-code (often a degenerate repetition such
# as `10000000...` at temperature 0): it cannot run, and the same reply would come again.
CUT_OFF_TEXT = (
    "This call was cut off at the model server's output limit before its code was complete, so "
    "it was not run. Call the tool again with shorter code."
)


def fallback_answer(last_output: str | None, *, wanted_code: bool) -> str:
    """The answer lci gives when the model gave none: the last code result, saying so."""
    why = (
        "it asked to run more code when no more could be run"
        if wanted_code
        else "its reply was empty"
    )
    if last_output is None:
        return f"[The model did not answer: {why}.]"
    return f"[The model did not answer: {why}. The last result of the code was:]\n\n{last_output}"


def invalid_call_text(name: str, problem: str | None, others: tuple[str, ...] = ()) -> str:
    if name != TOOL_NAME:
        if others:
            names = ", ".join(f"`{tool}`" for tool in (TOOL_NAME, *others))
            return f"Error: there is no tool named {name!r}. The tools are {names}."
        return f"Error: there is no tool named {name!r}. The only tool is `{TOOL_NAME}`."
    return (
        f"Error: the arguments of this call could not be read ({problem}). Call `{TOOL_NAME}` "
        'again with a JSON object such as {"code": "print(1 + 1)"}.'
    )


def _png_size(b64: str) -> tuple[int, int] | None:
    try:
        head = base64.b64decode(b64[:32] + "=" * (-len(b64[:32]) % 4))
    except ValueError:
        return None
    if len(head) < 24 or not head.startswith(b"\x89PNG"):
        return None
    width, height = struct.unpack(">II", head[16:24])
    return int(width), int(height)
