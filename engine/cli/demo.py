"""`lci demo`: the code-interpreter loop in a few seconds, without a model server or a GPU.

lci's scripted demo model (engine/cli/demo_model.py) stands in for the model: its words are canned,
but the code it sends runs for real in a sandbox, through the same loop as `lci chat`: a
computation, a cell that fails and the fixed cell (an error and the recovery), a figure and a
file saved in --out-dir. The same model answers `lci chat --model demo` and, for the HTTP
surfaces, `lci serve --llm-model demo`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from engine.cli import chat
from engine.cli.demo_model import DEMO_MODEL
from engine.models import BackendName

QUESTION = "Show me what you can do."


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `demo` command to an argparse subparsers object."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "demo",
        help="see the loop run with a scripted demo model (no model server needed)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("question", nargs="*", help=f"any question (default: {QUESTION!r})")
    p.add_argument("-i", "--interactive", action="store_true", help="more questions after this one")
    p.add_argument("--backend", choices=[b.value for b in BackendName], help="sandbox backend")
    p.add_argument("--out-dir", type=Path, help="where the figure and the file are saved (here)")
    p.add_argument("--no-reasoning", action="store_true", help="do not print the reasoning")
    p.add_argument("--json", action="store_true", help="print the events as JSON lines")
    return p


def chat_args(args: argparse.Namespace) -> argparse.Namespace:
    """The `lci chat --model demo ...` arguments the demo runs with."""
    argv = ["chat", "--model", DEMO_MODEL]
    if args.backend:
        argv += ["--backend", args.backend]
    if args.out_dir is not None:
        argv += ["--out-dir", str(args.out_dir)]
    argv += [flag for flag in ("--no-reasoning", "--json", "-i") if _given(args, flag)]
    parser = argparse.ArgumentParser(prog="lci")
    chat.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args([*argv, "--", *(args.question or [QUESTION])])


def _given(args: argparse.Namespace, flag: str) -> bool:
    name = {"-i": "interactive"}.get(flag, flag.removeprefix("--").replace("-", "_"))
    return bool(getattr(args, name))


async def run(args: argparse.Namespace) -> int:
    """As `lci chat --model demo`: 0 when the demo answered."""
    return await chat.run(chat_args(args))
