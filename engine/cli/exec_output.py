"""How `lci exec` shows a cell: its output live as it happens, then what went wrong, in words.

Output items arrive through the execution's callback while the cell runs. A cell that printed more
than the output budget keeps a head (shown live) and a tail (known only at the end): the tail is
printed after the cell, behind the truncation marker.
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

from engine.models import (
    DisplayOutput,
    Execution,
    Outcome,
    OutputItem,
    ResultOutput,
    StreamOutput,
    TruncationMarker,
)


class CellPrinter:
    """Prints one session's cells; `item` is the live callback, `finish` ends a cell."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self._prefix = uuid.uuid4().hex[:6]  # images of two runs in one directory never collide
        self._cell = 0
        self._shown = 0  # rich outputs of this cell saved or printed so far

    def start(self) -> None:
        self._cell += 1
        self._shown = 0

    def item(self, item: OutputItem) -> None:
        if isinstance(item, StreamOutput):
            stream = sys.stdout if item.name == "stdout" else sys.stderr
            stream.write(item.text)
            stream.flush()
        elif isinstance(item, DisplayOutput | ResultOutput):
            self._rich(item)

    def finish(self, execution: Execution) -> None:
        self._tail(execution)
        sys.stdout.flush()
        error = execution.error
        if error is None:
            return
        limit = f"{execution.limits.timeout_s:g} s"
        traceback = error.traceback.rstrip()
        if execution.outcome is Outcome.INTERRUPTED and error.name == "KeyboardInterrupt":
            # The deadline's SIGINT: the user's frames say where it was, the last line says why.
            lines = traceback.splitlines()
            if lines and lines[-1].startswith("KeyboardInterrupt"):
                lines.pop()
            if len(lines) > 1 and lines[0].startswith("---") and "KeyboardInterrupt" in lines[1]:
                del lines[:2]  # IPython's header names the exception too
            _err("\n".join(lines).rstrip())
            _err(f"lci: timed out after {limit} (interrupted; the session keeps its state)")
        elif execution.outcome is Outcome.ERROR and error.name == "CPUTimeExceeded":
            _err(traceback)
            cpu = f"{execution.limits.effective_cpu_s:g} s"
            _err(
                f"lci: used up its CPU time limit of {cpu} (interrupted; the session keeps its state)"
            )
        elif execution.outcome is Outcome.KILLED and error.name == "TimeoutError":
            _err(traceback)
            _err(
                f"lci: timed out after {limit} and did not stop when interrupted; the interpreter "
                "was restarted and its state lost"
            )
        else:
            _err(traceback or f"{error.name}: {error.value}")
            if traceback and execution.outcome is not Outcome.ERROR:
                _err(f"{error.name}: {error.value}")

    def _tail(self, execution: Execution) -> None:
        """What the live callback never saw: the marker and the tail after it."""
        after = False
        for item in execution.outputs:
            if isinstance(item, TruncationMarker):
                after = True
                print(f"\n[... {item.omitted_bytes} bytes of output omitted ...]", flush=True)
            elif after and isinstance(item, StreamOutput):
                self.item(item)

    def _rich(self, item: DisplayOutput | ResultOutput) -> None:
        self._shown += 1
        if item.image_type is not None:
            stem = self.out_dir / f"lci-{self._prefix}-cell{self._cell}-{self._shown}"
            try:
                print(f"[image saved to {item.save(stem)}]", flush=True)
            except OSError as exc:  # a read-only current directory must not end the session
                print(f"[image not saved: {exc.strerror}; use --out-dir]", flush=True)
        else:
            print(item.data.get("text/plain", ""), flush=True)


def _err(text: str) -> None:
    if text:
        print(text, file=sys.stderr, flush=True)
