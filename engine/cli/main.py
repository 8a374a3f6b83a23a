"""`lci`: the command line. Each subcommand lives in its own module of this package; this only
dispatches. The modules are imported explicitly, so a broken one fails loudly instead of vanishing
from the command list."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from importlib import metadata
from types import ModuleType

from engine.cli import chat, demo, doctor, image, mcp_stdio, serve
from engine.cli import exec as exec_command
from engine.cli.common import UsageError

# subcommand -> module with add_parser(subparsers) and run(args) (a coroutine or a plain function)
SUBCOMMANDS: dict[str, ModuleType] = {
    "exec": exec_command,
    "chat": chat,
    "demo": demo,
    "image": image,
    "serve": serve,
    "mcp": mcp_stdio,
    "doctor": doctor,
}


def version() -> str:
    try:
        return metadata.version("lci")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lci", description="A local code interpreter for any LLM."
    )
    parser.add_argument("--version", action="version", version=f"lci {version()}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug information")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module in SUBCOMMANDS.values():
        module.add_parser(subparsers)
    # `lci exec -v ...` as well as `lci -v exec ...`: SUPPRESS keeps the top-level value when the
    # subcommand does not repeat the flag.
    for sub in subparsers.choices.values():
        sub.add_argument(
            "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="as lci -v"
        )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        result = SUBCOMMANDS[args.command].run(args)
        if asyncio.iscoroutine(result):
            result = asyncio.run(result)
    except UsageError as exc:
        print(f"lci {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return int(result)


if __name__ == "__main__":
    sys.exit(main())
