"""Per-kind output callbacks (`on_stdout`, `on_stderr`, `on_display`, `on_result`, `on_error`)
beside the one mixed `on_output`, shared by the in-process sessions and the HTTP client.

    session.execute(code, on_stdout=lambda text: print(text, end=""),
                    on_display=lambda item: item.save("figure"))

Every `execute` takes them as keyword arguments, typed once by `OutputCallbackArgs`, and turns
them into one `OutputCallbacks`, which is what is passed on inside.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypedDict

from engine.models import (
    DisplayOutput,
    ErrorInfo,
    Execution,
    OutputItem,
    ResultOutput,
    StreamOutput,
)

ItemCallback = Callable[[OutputItem], None]
TextCallback = Callable[[str], None]


class OutputCallbackArgs(TypedDict, total=False):
    """The output callbacks `execute` accepts as keyword arguments (`**callbacks`)."""

    on_output: ItemCallback | None
    on_stdout: TextCallback | None
    on_stderr: TextCallback | None
    on_display: Callable[[DisplayOutput], None] | None
    on_result: Callable[[ResultOutput], None] | None
    on_error: Callable[[ErrorInfo], None] | None


@dataclass(frozen=True)
class OutputCallbacks:
    """The output callbacks of one execution; `OutputCallbacks(**args)` from the keywords."""

    on_output: ItemCallback | None = None
    on_stdout: TextCallback | None = None
    on_stderr: TextCallback | None = None
    on_display: Callable[[DisplayOutput], None] | None = None
    on_result: Callable[[ResultOutput], None] | None = None
    on_error: Callable[[ErrorInfo], None] | None = None

    def item_callback(self) -> ItemCallback | None:
        """One callback for the output stream, or None when nobody listens (no per-item cost)."""
        if not any(
            (self.on_output, self.on_stdout, self.on_stderr, self.on_display, self.on_result)
        ):
            return None
        return self.item

    def item(self, item: OutputItem) -> None:
        if self.on_output is not None:
            self.on_output(item)
        if isinstance(item, StreamOutput):
            per_stream = self.on_stdout if item.name == "stdout" else self.on_stderr
            if per_stream is not None:
                per_stream(item.text)
        elif isinstance(item, DisplayOutput) and self.on_display is not None:
            self.on_display(item)
        elif isinstance(item, ResultOutput) and self.on_result is not None:
            self.on_result(item)

    def finished(self, execution: Execution) -> Execution:
        """Calls `on_error` when the cell raised, timed out or crashed; returns the execution."""
        if execution.error is not None and self.on_error is not None:
            self.on_error(execution.error)
        return execution
