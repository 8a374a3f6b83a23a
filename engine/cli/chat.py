"""`lci chat QUESTION`: run the code-interpreter loop against a model server and print it live.

Configuration comes from the options, else from `LCI_*` environment variables (`LCI_LLM_BASE_URL`,
`LCI_LLM_MODEL`, `LCI_LLM_API_KEY`, `LCI_BACKEND`, ...). Images the code displays are saved as PNG
files (in --out-dir, default the current directory) and their paths printed.
"""

from __future__ import annotations

import argparse
import base64
import sys
import time
import uuid
from pathlib import Path
from typing import Any, TextIO

from engine.cli.common import build, load_settings, secret_option, writable_dir
from engine.core.manager import SessionManager
from engine.models import BackendName, Execution, SessionSpec
from engine.orchestrator import (
    CodeComplete,
    ErrorEvent,
    Event,
    ExecutionResult,
    Final,
    LoopOptions,
    Orchestrator,
    ReasoningDelta,
    RoundStart,
    TextDelta,
    UpstreamClient,
)
from engine.session_runner import SessionRunner


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `chat` command to an argparse subparsers object."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "chat",
        help="ask a model a question it may answer by running Python",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("question", nargs="+", help="the question (words are joined)")
    p.add_argument("--backend", choices=[b.value for b in BackendName], help="sandbox backend")
    p.add_argument("--base-url", help="model server, e.g. http://127.0.0.1:8080/v1")
    p.add_argument("--model", help="model name sent to the server")
    p.add_argument(
        "--api-key-file",
        type=Path,
        metavar="FILE",
        help="file whose first line is the model server's API key; or set LCI_LLM_API_KEY",
    )
    # Refused with an explanation: a key here is readable in /proc/<pid>/cmdline by any local user.
    p.add_argument("--api-key", help=argparse.SUPPRESS)
    p.add_argument("--system", help="your own system prompt (replaces the default one)")
    p.add_argument("--max-rounds", type=int, default=20, help="model calls at most (20)")
    p.add_argument("--timeout", type=float, help="seconds per code execution")
    p.add_argument("--deadline", type=float, default=600.0, help="seconds for everything (600)")
    p.add_argument("--temperature", type=float, help="sampling temperature")
    p.add_argument("--max-tokens", type=int, help="tokens per model reply")
    p.add_argument(
        "--python-blocks",
        nargs="?",
        const="on",
        default="off",
        choices=["auto", "on", "off"],
        help="also run ```python blocks the model writes in its text (auto: until it makes a "
        "native tool call)",
    )
    p.add_argument("--out-dir", type=Path, help="where images are saved (default: here)")
    p.add_argument("--no-reasoning", action="store_true", help="do not print the reasoning")
    p.add_argument("--json", action="store_true", help="print the events as JSON lines")
    return p


def _options(args: argparse.Namespace) -> LoopOptions:
    params: dict[str, Any] = {}
    if args.temperature is not None:
        params["temperature"] = args.temperature
    if args.max_tokens is not None:
        params["max_tokens"] = args.max_tokens
    values = {
        "max_rounds": args.max_rounds,
        "exec_timeout_s": args.timeout,
        "deadline_s": args.deadline,
        "python_blocks": args.python_blocks,
        "params": params,
    }
    flags = {
        "max_rounds": "--max-rounds",
        "exec_timeout_s": "--timeout",
        "deadline_s": "--deadline",
    }
    return build(LoopOptions, values, flags, "")


async def run(args: argparse.Namespace) -> int:
    """Run one question; 0 when the model answered, 1 when the loop ended with an error, 3 when
    the answer was cut short (the model server's token limit, or the round cap)."""
    key = secret_option(args.api_key, "--api-key", args.api_key_file, "--api-key-file")
    # One session, used once: pre-started sandboxes and a fork server would only cost start-up.
    settings = load_settings(forkserver=False, subprocess_warm_pool=0, docker_warm_pool=0)
    options = _options(args)  # checked before anything starts
    out_dir = writable_dir(args.out_dir, "--out-dir") if args.out_dir else Path(".")
    base_url = args.base_url or settings.llm_base_url
    backend = BackendName(args.backend) if args.backend else settings.backend
    messages = [{"role": "user", "content": " ".join(args.question)}]
    if args.system:
        messages.insert(0, {"role": "system", "content": args.system})
    printer = _Printer(sys.stdout, out_dir, reasoning=not args.no_reasoning, as_json=args.json)
    async with (
        SessionManager(settings) as manager,
        UpstreamClient(base_url, key or settings.llm_api_key) as upstream,
    ):
        runner = SessionRunner(manager, SessionSpec(backend=backend, limits=settings.limits))
        orchestrator = Orchestrator(upstream, runner, args.model or settings.llm_model)
        async for event in orchestrator.run(
            messages, conversation_id=uuid.uuid4().hex, options=options
        ):
            printer.show(event)
    return printer.exit_code


class _Printer:
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
        if isinstance(event, (Final, ErrorEvent)):
            self._end(event)

    def _result(self, event: ExecutionResult) -> None:
        ex = event.execution
        how = event.status if ex is None else f"{ex.outcome.value}, {ex.duration_ms:.0f} ms"
        number = self._blocks.get(event.call_id)
        self._section(f"result{'' if number is None else f' {number}'} ({how})")
        self._write(event.output.rstrip("\n") + "\n")
        if ex is not None:
            for path in self._save_images(ex):
                self._write(f"image saved: {path}\n")

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


def main(argv: list[str] | None = None) -> int:
    """Run `chat` on its own (`python -m engine.cli.chat QUESTION`)."""
    import asyncio

    parser = argparse.ArgumentParser(prog="lci")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return asyncio.run(run(parser.parse_args(["chat", *(sys.argv[1:] if argv is None else argv)])))


if __name__ == "__main__":
    raise SystemExit(main())
