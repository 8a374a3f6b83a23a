"""`lci serve`: the HTTP server (OpenAI- and DashScope-compatible code interpreter, session API).

Options override `LCI_*` environment variables (`LCI_LLM_BASE_URL`, `LCI_LLM_MODEL`,
`LCI_LLM_API_KEY`, `LCI_BACKEND`, `LCI_LIMITS`, `LCI_MAX_LIMITS`, ...) and `LCI_SERVER_*` ones
(`LCI_SERVER_MAX_BODY_BYTES`, `LCI_SERVER_ALLOW_NON_STREAM`, ...). It binds to 127.0.0.1 unless told
otherwise; on SIGINT or SIGTERM it lets open requests finish briefly, then closes every session.

Client keys: set LCI_API_KEY in the environment, or give a keys file with --api-key-file (one key
per line, `KEY` or `NAME KEY`), never a key on the command line, where every local user can read it.
Each key sees only the sessions it created. Requests must name this server in their Host header (an
IP address, localhost, the bind address, or an --allow-host name), which defeats DNS rebinding.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.cli.common import UsageError, build, load_settings
from engine.cli.demo_model import DEMO_MODEL, DemoModel
from engine.models import BackendName

if TYPE_CHECKING:
    from engine.config import Settings
    from engine.server.runtime.options import ServerOptions

_MAXIMA = {  # option -> (LimitMaxima field, type, help)
    "--max-memory-mb": ("memory_mb", int, "largest memory_mb a client may ask for (default 8192)"),
    "--max-disk-mb": ("disk_mb", int, "largest disk_mb a client may ask for (default 8192)"),
    "--max-output-bytes": ("output_bytes", int, "largest output_bytes (default 16 MiB)"),
    "--max-timeout-s": ("timeout_s", float, "largest timeout_s and cpu_s (default 3600)"),
    "--max-procs": ("max_procs", int, "largest max_procs (default 1024)"),
}


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `serve` command to an argparse subparsers object."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "serve",
        help="serve the code interpreter over HTTP (OpenAI, DashScope and session APIs)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 8000)")
    p.add_argument("--backend", choices=[b.value for b in BackendName], help="sandbox backend")
    p.add_argument("--llm-base-url", help="model server, e.g. http://127.0.0.1:8080/v1")
    p.add_argument(
        "--llm-model",
        help="model used when a request names none ('demo' without --llm-base-url: lci's "
        "scripted demo model, no model server needed)",
    )
    p.add_argument("--llm-api-key", help="API key of the model server")
    p.add_argument(
        "--api-key-file",
        type=Path,
        help="file of client keys (`KEY` or `NAME KEY` per line); or set LCI_API_KEY",
    )
    # Refused with an explanation: a key here is readable in /proc/<pid>/cmdline by any local user.
    p.add_argument("--api-key", help=argparse.SUPPRESS)
    p.add_argument(
        "--allow-host",
        action="append",
        metavar="NAME",
        help="a host name clients may use (repeatable; '*' for any)",
    )
    for option, (_, kind, text) in _MAXIMA.items():
        p.add_argument(option, type=kind, help=text)
    p.add_argument("--max-body-bytes", type=int, help="largest request body (default 8 MiB)")
    p.add_argument("--max-connections", type=int, help="open connections at most (default 512)")
    p.add_argument(
        "--python-blocks",
        choices=["auto", "on", "off"],
        help="run ```python blocks of the model's text as code (default auto: until the model "
        "makes a native tool call)",
    )
    p.add_argument(
        "--web-search-url",
        metavar="URL",
        help="SearXNG base URL (JSON format enabled): offers web_search and web_extractor to "
        "requests that enable them (default: none; LCI_SERVER_WEB_SEARCH_URL)",
    )
    p.add_argument(
        "--web-allow-host",
        action="append",
        metavar="HOST",
        help="a host web_extractor may fetch although it resolves to a loopback or private "
        "address (repeatable; LCI_SERVER_WEB_ALLOW_HOSTS, comma-separated)",
    )
    p.add_argument(
        "--web-extractor",
        choices=["auto", "on", "off"],
        help="offer web_extractor (default auto: when --web-search-url is set)",
    )
    p.add_argument(
        "--ray-address",
        metavar="ADDRESS",
        help="run sessions on this Ray cluster (its GCS address, e.g. 10.0.0.5:6379); any number "
        "of replicas given the same address serve the same sessions (LCI_RAY_ADDRESS)",
    )
    p.add_argument("--log-level", default="info", help="uvicorn log level (default info)")
    return p


def configure(args: argparse.Namespace) -> tuple[Settings, ServerOptions]:
    """Settings and server options from the environment, overridden by the given options."""
    from engine.server.runtime.options import ServerOptions

    if args.api_key is not None:
        raise SystemExit(
            "lci serve: --api-key is not accepted: every local user can read the command line. "
            "Set LCI_API_KEY in the environment or use --api-key-file."
        )
    overrides = {
        "backend": args.backend,
        "llm_base_url": args.llm_base_url,
        "llm_model": args.llm_model,
        "llm_api_key": args.llm_api_key,
        "api_key_file": args.api_key_file,
        "ray_address": args.ray_address,
    }
    env_settings = load_settings()
    maxima = env_settings.max_limits.model_dump()
    for option, (name, _, _) in _MAXIMA.items():
        value = getattr(args, option.removeprefix("--").replace("-", "_"))
        if value is not None:
            maxima[name] = value
            if name == "timeout_s":
                maxima["cpu_s"] = value
    overrides["max_limits"] = maxima
    settings = load_settings(**{k: v for k, v in overrides.items() if v is not None})
    server = {
        "host": args.host,
        "port": args.port,
        "max_body_bytes": args.max_body_bytes,
        "max_connections": args.max_connections,
        "allowed_hosts": args.allow_host,
        "python_blocks": args.python_blocks,
        "web_search_url": args.web_search_url,
        "web_allow_hosts": args.web_allow_host,
        "web_extractor": args.web_extractor,
    }
    flags = {
        "host": "--host",
        "port": "--port",
        "max_body_bytes": "--max-body-bytes",
        "max_connections": "--max-connections",
        "allowed_hosts": "--allow-host",
        "python_blocks": "--python-blocks",
    }
    options = build(ServerOptions, server, flags, "LCI_SERVER_")
    return settings, options


def check_address(host: str, port: int) -> None:
    """Fail now, in one line, when the address cannot be bound: before "serving on" is printed
    and before any session machinery starts. (The server binds again itself; the gap is tiny.)"""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
            probe.bind(address)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        hint = " (another process listens there; choose another --port)" if port else ""
        raise UsageError(f"cannot listen on {host}:{port}: {reason}{hint}") from None


async def run(args: argparse.Namespace) -> int:
    from engine.server import serve
    from engine.server.http.auth import KeyFileError

    settings, options = configure(args)  # a mistake is a UsageError: one line, exit 2
    check_address(options.host, options.port)
    with contextlib.ExitStack() as stack:
        if settings.llm_model == DEMO_MODEL and args.llm_base_url is None:
            # No model server: lci's scripted demo model answers, on a loopback port of its own.
            demo = stack.enter_context(DemoModel())
            settings = settings.model_copy(update={"llm_base_url": demo.base_url})
            print(f"lci: model: the scripted demo model ({demo.base_url})", file=sys.stderr)
        try:
            return await serve(settings, options, args.log_level)
        except KeyFileError as exc:
            print(f"lci serve: {exc}", file=sys.stderr)
            return 2
