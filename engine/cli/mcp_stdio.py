"""`lci mcp`: serve lci's sessions to an MCP client over stdio (the client starts this command).

Settings come from `LCI_*` environment variables (`LCI_BACKEND`, `LCI_LIMITS`, `LCI_MAX_SESSIONS`,
...), overridden by the options. Every session is closed when the client closes the stream or the
process gets SIGTERM or SIGINT. `lci serve` serves the same tools over HTTP at `/mcp`.
"""

from __future__ import annotations

import argparse
import importlib.metadata
from typing import TYPE_CHECKING, Any

from engine.models import BackendName, Limits

if TYPE_CHECKING:
    from engine.config import Settings


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `mcp` command to an argparse subparsers object."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "mcp",
        help="serve the code interpreter to an MCP client over stdio",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--backend", choices=[b.value for b in BackendName], help="sandbox backend")
    p.add_argument("--timeout", type=float, help="default seconds per run_python call")
    p.add_argument("--memory-mb", type=int, help="default memory of a session")
    p.add_argument("--max-sessions", type=int, help="sessions open at once (default 64)")
    p.add_argument(
        "--inline-bytes",
        type=int,
        default=4 << 20,
        help="largest file download_file embeds; larger ones are linked (default 4 MiB)",
    )
    return p


def configure(args: argparse.Namespace) -> Settings:
    """Settings from the environment, overridden by the given options."""
    from engine.config import Settings

    settings = Settings()
    limits: dict[str, Any] = {}
    if args.timeout is not None:
        limits["timeout_s"] = args.timeout
    if args.memory_mb is not None:
        limits["memory_mb"] = args.memory_mb
    updates: dict[str, Any] = {}
    if limits:
        updates["limits"] = Limits.model_validate({**settings.limits.model_dump(), **limits})
    if args.backend is not None:
        updates["backend"] = BackendName(args.backend)
    if args.max_sessions is not None:
        updates["max_sessions"] = args.max_sessions
    return Settings.model_validate({**settings.model_dump(), **updates})


async def run(args: argparse.Namespace) -> int:
    from engine.server.mcp.stdio import serve_stdio

    try:
        version = importlib.metadata.version("lci")
    except importlib.metadata.PackageNotFoundError:
        version = "0+unknown"
    return await serve_stdio(configure(args), version, args.inline_bytes)
