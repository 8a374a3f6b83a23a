"""`lci exec`: run cells in one session and print what happened."""

from __future__ import annotations

import argparse
import base64
import sys
from pathlib import Path

from engine.config import Settings
from engine.core.manager import SessionManager
from engine.errors import LCIError
from engine.models import (
    BackendName,
    DisplayOutput,
    Execution,
    Outcome,
    ResultOutput,
    SessionSpec,
    StreamOutput,
    TruncationMarker,
)

_IMAGE_TYPES = {"image/png": "png", "image/jpeg": "jpg"}


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "exec",
        help="run Python cells in one sandboxed session",
        description="Each CODE argument is one cell ('-' reads a cell from stdin); all run in "
        "order in one session, so later cells see what earlier ones defined.",
    )
    parser.add_argument("code", nargs="+", metavar="CODE")
    parser.add_argument("--backend", choices=[b.value for b in BackendName], default=None)
    parser.add_argument("--timeout", type=float, default=None, help="seconds per cell")
    parser.add_argument("--memory-mb", type=int, default=None)
    parser.add_argument("--network", action="store_true", help="allow network access")
    parser.add_argument("--json", action="store_true", help="print one Execution JSON per line")
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=Path.cwd(),
        help="where images are saved (default: current directory)",
    )


def _cells(codes: list[str]) -> list[str]:
    return [sys.stdin.read() if code == "-" else code for code in codes]


async def run(args: argparse.Namespace) -> int:
    # One session, used once: pre-started sandboxes and a fork server would only cost start-up.
    settings = Settings(forkserver=False, subprocess_warm_pool=0, docker_warm_pool=0)
    updates: dict[str, object] = {"network": args.network}
    if args.timeout is not None:
        updates["timeout_s"] = args.timeout
    if args.memory_mb is not None:
        updates["memory_mb"] = args.memory_mb
    spec = SessionSpec(
        backend=BackendName(args.backend or settings.backend),
        limits=settings.limits.model_copy(update=updates),
    )
    failed = False
    try:
        async with SessionManager(settings) as manager:
            session = await manager.create(spec)
            for code in _cells(args.code):
                execution = await session.execute(code)
                failed |= execution.outcome is not Outcome.COMPLETED
                if args.json:
                    print(execution.model_dump_json(), flush=True)
                else:
                    _print_human(execution, args.out_dir)
    except LCIError as exc:
        print(f"lci: {exc.message}", file=sys.stderr)
        return 2
    return 1 if failed else 0


def _print_human(execution: Execution, out_dir: Path) -> None:
    for index, item in enumerate(execution.outputs):
        if isinstance(item, StreamOutput):
            stream = sys.stdout if item.name == "stdout" else sys.stderr
            stream.write(item.text)
        elif isinstance(item, TruncationMarker):
            print(f"[... {item.omitted_bytes} bytes of output omitted ...]")
        elif isinstance(item, DisplayOutput | ResultOutput):
            print(_render(item, out_dir / f"lci-{execution.id}-{index}"))
    sys.stdout.flush()
    if execution.error is not None:
        error = execution.error
        print(error.traceback.rstrip() or f"{error.name}: {error.value}", file=sys.stderr)
        if error.traceback and execution.outcome in (
            Outcome.KILLED,
            Outcome.CRASHED,
            Outcome.INTERRUPTED,
        ):
            print(f"{error.name}: {error.value}", file=sys.stderr)


def _render(item: DisplayOutput | ResultOutput, stem: Path) -> str:
    for mime, suffix in _IMAGE_TYPES.items():
        if mime in item.data:
            path = stem.with_suffix(f".{suffix}")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(base64.b64decode(item.data[mime]))
            return f"[image saved to {path}]"
    return item.data.get("text/plain", "")
