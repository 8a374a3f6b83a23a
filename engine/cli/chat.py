"""`lci chat [QUESTION]`: run the code-interpreter loop against a model server and print it live.

Configuration comes from the options, else from `LCI_*` environment variables (`LCI_LLM_BASE_URL`,
`LCI_LLM_MODEL`, `LCI_LLM_API_KEY`, `LCI_BACKEND`, ...). `--model demo` without `--base-url` needs
no model server: lci's scripted demo model answers (`lci demo` runs it).

Files: `--put` copies local files into the sandbox's working directory before the first question;
images the code displays, and files the code writes there, are saved in --out-dir (default: the
current directory) and their paths printed; `--get` copies named files out at the end.

Without a question (or with -i) the chat is interactive: each line is a question, in the same
sandbox session and the same conversation. Ctrl-C stops the running turn, Ctrl-D ends the chat.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.cli.common import (
    build,
    gets_of,
    limits_with,
    load_settings,
    puts_of,
    secret_option,
    writable_dir,
)
from engine.models import BackendName

if TYPE_CHECKING:
    from engine.orchestrator import LoopOptions


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `chat` command to an argparse subparsers object."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "chat",
        help="ask a model questions it may answer by running Python",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("question", nargs="*", help="the question (words are joined); none: interactive")
    p.add_argument("-i", "--interactive", action="store_true", help="more questions after this one")
    p.add_argument("--backend", choices=[b.value for b in BackendName], help="sandbox backend")
    p.add_argument("--base-url", help="model server, e.g. http://127.0.0.1:8080/v1")
    p.add_argument("--model", help="model name sent to the server ('demo': the scripted demo)")
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
    p.add_argument("--network", action="store_true", help="let the sandbox reach the network")
    p.add_argument(
        "--shell",
        action="store_true",
        help="offer the model a shell tool too (bash commands in the same sandbox)",
    )
    p.add_argument(
        "--put",
        action="append",
        default=[],
        metavar="LOCAL[:PATH]",
        help="copy a local file into the working directory first (repeatable)",
    )
    p.add_argument(
        "--get",
        action="append",
        default=[],
        metavar="PATH[:LOCAL]",
        help="copy a file of the working directory out at the end (default: into --out-dir; "
        "repeatable)",
    )
    p.add_argument(
        "--out-dir",
        type=Path,
        help="where images and files the code wrote are saved (default: here)",
    )
    p.add_argument("--no-reasoning", action="store_true", help="do not print the reasoning")
    p.add_argument("--json", action="store_true", help="print the events as JSON lines")
    return p


def _options(args: argparse.Namespace) -> LoopOptions:
    from engine.orchestrator import LoopOptions

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
        "shell": args.shell,
        "params": params,
    }
    flags = {
        "max_rounds": "--max-rounds",
        "exec_timeout_s": "--timeout",
        "deadline_s": "--deadline",
    }
    return build(LoopOptions, values, flags, "")


async def run(args: argparse.Namespace) -> int:
    """Run the question(s); 0 when the model answered, 1 when the (last) loop ended with an error,
    3 when the answer was cut short (the model server's token limit, or the round cap)."""
    # Imported here, not at the top: `lci --version` and `lci exec` need none of it.
    from engine.cli.chat_session import ChatSession, Files
    from engine.models import SessionSpec

    # The key is read from its file; the attribute then holds it for the session's client.
    args.api_key = secret_option(args.api_key, "--api-key", args.api_key_file, "--api-key-file")
    # One session: pre-started sandboxes and a fork server would only cost start-up.
    settings = load_settings(forkserver=False, subprocess_warm_pool=0, docker_warm_pool=0)
    options = _options(args)  # checked before anything starts
    out_dir = writable_dir(args.out_dir, "--out-dir") if args.out_dir else Path(".")
    files = Files(puts_of(args.put), gets_of(args.get, out_dir), out_dir)
    limits = settings.limits
    if args.network:
        limits = limits_with(limits, {"network": True})
    backend = BackendName(args.backend) if args.backend else settings.backend
    spec = SessionSpec(backend=backend, limits=limits)
    question = " ".join(args.question)
    async with ChatSession(args, settings, spec, options, files) as chat:
        if args.interactive or not question:
            from engine.cli.chat_repl import repl

            code = await repl(chat, question)
        else:
            code = await chat.ask(question)
        await chat.fetch()
    return code


def main(argv: list[str] | None = None) -> int:
    """Run `chat` on its own (`python -m engine.cli.chat QUESTION`)."""
    import asyncio

    parser = argparse.ArgumentParser(prog="lci")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return asyncio.run(run(parser.parse_args(["chat", *(sys.argv[1:] if argv is None else argv)])))


if __name__ == "__main__":
    raise SystemExit(main())
