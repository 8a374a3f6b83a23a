"""How `lci chat` shows a run: the loop's events printed as they come, images and files saved."""

from __future__ import annotations

import base64
import sys
import time
import uuid
from pathlib import Path
from typing import TextIO

from engine.models import Execution
from engine.orchestrator import (
    CodeComplete,
    ErrorEvent,
    Event,
    ExecutionResult,
    Final,
    ReasoningDelta,
    RoundStart,
    ShellCall,
    ShellCommandDone,
    TextDelta,
)


class ChatPrinter:
    """Prints events as they come; dims reasoning on a terminal."""

    def __init__(self, out: TextIO, out_dir: Path, *, reasoning: bool, as_json: bool) -> None:
        self.out = out
        self.out_dir = out_dir
        self.reasoning = reasoning
        self.as_json = as_json
        self.tty = out.isatty()
        self.exit_code = 0
        self.started = time.monotonic()
        self._mode = ""
        self._pending = ""  # a round's heading, shown once the round shows anything
        self._blocks: dict[str, int] = {}  # call id -> the number its code block is shown with
        self._images = 0
        self._prefix = uuid.uuid4().hex[:6]

    def show(self, event: Event) -> None:
        if self.as_json:
            self._write(event.model_dump_json() + "\n")
        elif isinstance(event, RoundStart):
            self._mode = ""
            title = f"round {event.round}" + (" (answer now)" if event.final_call else "")
            self._pending = f"\n{self._dim('── ' + title + ' ──')}\n"
        elif isinstance(event, ReasoningDelta) and self.reasoning:
            self._stream("reasoning", self._dim(event.text))
        elif isinstance(event, TextDelta):
            self._stream("text", event.text)
        elif isinstance(event, CodeComplete):
            # Call ids mean nothing to a reader: blocks are numbered, their results say which.
            number = self._blocks.setdefault(event.call_id, len(self._blocks) + 1)
            self._section(f"code {number}")
            self._write(event.code.rstrip("\n") + "\n")
        elif isinstance(event, ExecutionResult):
            self._result(event)
        elif isinstance(event, ShellCall):
            self._section("shell")
            self._write("".join(f"$ {command}\n" for command in event.commands))
        elif isinstance(event, ShellCommandDone):
            self._shell_output(event)
        if isinstance(event, (Final, ErrorEvent)):
            self._end(event)

    def note(self, text: str) -> None:
        """A line of lci's own (a file saved): on stdout, or on stderr beside JSON events."""
        if self.as_json:
            print(text, file=sys.stderr, flush=True)
        else:
            self._write(text + "\n")

    def _result(self, event: ExecutionResult) -> None:
        ex = event.execution
        how = event.status if ex is None else f"{ex.outcome.value}, {ex.duration_ms:.0f} ms"
        number = self._blocks.get(event.call_id)
        self._section(f"result{'' if number is None else f' {number}'} ({how})")
        self._write(event.output.rstrip("\n") + "\n")
        if ex is not None:
            for path in self._save_images(ex):
                self._write(f"image saved: {path}\n")

    def _shell_output(self, event: ShellCommandDone) -> None:
        output = event.output
        how = "timed out" if output.timed_out else f"exit {output.exit_code}"
        self._section(f"shell output ({how}): $ {output.command}")
        text = output.stdout + (f"[stderr]\n{output.stderr}" if output.stderr else "")
        self._write(text.rstrip("\n") + "\n" if text else "")

    def _save_images(self, execution: Execution) -> list[Path]:
        paths = []
        for item in execution.outputs:
            data = getattr(item, "data", None)
            if isinstance(data, dict) and "image/png" in data:
                self._images += 1
                path = self.out_dir / f"lci-{self._prefix}-fig-{self._images:03d}.png"
                self.out_dir.mkdir(parents=True, exist_ok=True)
                path.write_bytes(base64.b64decode(data["image/png"]))
                paths.append(path)
        return paths

    def _end(self, event: Final | ErrorEvent) -> None:
        if isinstance(event, ErrorEvent):
            self._pending = ""  # the failed round showed nothing: no heading for it
            self.exit_code = 1
            if not self.as_json:
                print(f"\nerror ({event.code}): {event.message}", file=sys.stderr)
        else:
            if event.finish_reason == "length":
                self.exit_code = 3
            if not self.as_json:
                # The answer was printed as it streamed; only say when it was cut short.
                self._write("\n" + _CUT.get(event.incomplete or "", ""))
        if self.as_json:
            return
        u = event.usage
        if isinstance(event, ErrorEvent) and not (event.executions or u.input_tokens):
            return  # nothing happened before the failure: a summary of zeros says nothing
        self._write(
            self._dim(
                f"\n{_count(event.rounds, 'round')}, "
                f"{_count(event.executions, 'code execution')}, "
                f"{u.input_tokens} input + {u.output_tokens} output tokens "
                f"({u.reasoning_tokens} reasoning), {time.monotonic() - self.started:.1f} s\n"
            )
        )

    def _section(self, title: str) -> None:
        self._mode = ""
        self._write(f"\n{self._dim('── ' + title + ' ──')}\n")

    def _stream(self, mode: str, text: str) -> None:
        if self._mode and self._mode != mode:
            self._write("\n")
        self._mode = mode
        self._write(text)

    def _dim(self, text: str) -> str:
        return f"\x1b[2m{text}\x1b[0m" if self.tty else text

    def _write(self, text: str) -> None:
        if self._pending:
            text, self._pending = self._pending + text, ""
        self.out.write(text)
        self.out.flush()


_CUT = {
    "max_tokens": "(cut short: the model server's token limit was reached)\n",
    "max_rounds": "(cut short: the model still wanted to run code)\n",
}


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")
