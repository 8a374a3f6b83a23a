"""`lci`: the command line. Each subcommand lives in its own module; this only dispatches."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import sys

# subcommand -> module with add_parser(subparsers) and run(args) (a coroutine or a plain function)
_SUBCOMMANDS = {
    "exec": "engine.cli_exec",
    "chat": "engine.cli_chat",
    "image": "engine.cli_image",
    "serve": "engine.cli_serve",
}


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, object]]:
    parser = argparse.ArgumentParser(
        prog="lci", description="A local code interpreter for any LLM."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug information")
    subparsers = parser.add_subparsers(dest="command", required=True)
    modules: dict[str, object] = {}
    for name, module_name in _SUBCOMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue  # a subcommand whose optional dependencies are missing is simply absent
        module.add_parser(subparsers)
        modules[name] = module
    return parser, modules


def main(argv: list[str] | None = None) -> int:
    parser, modules = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    result = modules[args.command].run(args)  # type: ignore[attr-defined]
    if asyncio.iscoroutine(result):
        try:
            result = asyncio.run(result)
        except KeyboardInterrupt:
            return 130
    return int(result)


if __name__ == "__main__":
    sys.exit(main())
