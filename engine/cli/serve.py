"""`lci serve`: the HTTP server (OpenAI- and DashScope-compatible code interpreter, session API).

Options override `LCI_*` environment variables (`LCI_LLM_BASE_URL`, `LCI_LLM_MODEL`,
`LCI_LLM_API_KEY`, `LCI_BACKEND`, `LCI_LIMITS`, `LCI_MAX_LIMITS`, ...) and `LCI_SERVER_*` ones
(`LCI_SERVER_MAX_BODY_BYTES`, `LCI_SERVER_ALLOW_NON_STREAM`, ...). It binds to 127.0.0.1 unless told
otherwise; on SIGINT or SIGTERM it lets open requests finish briefly, then closes every session.

Client keys: set LCI_API_KEY in the environment, or give a keys file with --api-key-file (one key
per line, `KEY` or `NAME KEY`), never a key on the command line, where every local user can read it.
The model server's key likewise: LCI_LLM_API_KEY, or --llm-api-key-file (its first line).
Each key sees only the sessions it created. Requests must name this server in their Host header (an
IP address, localhost, the bind address, or an --allow-host name), which defeats DNS rebinding.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.cli.common import UsageError, build, load_settings, secret_option
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
    p.add_argument(
        "--docker-runtime",
        metavar="NAME",
        help="OCI runtime of the docker backend's containers, as registered in the daemon "
        "(e.g. runsc for gVisor; LCI_DOCKER_RUNTIME; default: the daemon's)",
    )
    p.add_argument("--llm-base-url", help="model server, e.g. http://127.0.0.1:8080/v1")
    p.add_argument(
        "--llm-model",
        help="model used when a request names none ('demo' without --llm-base-url: lci's "
        "scripted demo model, no model server needed)",
    )
    p.add_argument(
        "--llm-api-key-file",
        type=Path,
        metavar="FILE",
        help="file whose first line is the model server's API key; or set LCI_LLM_API_KEY",
    )
    p.add_argument(
        "--api-key-file",
        type=Path,
        help="file of client keys (`KEY` or `NAME KEY` per line); or set LCI_API_KEY",
    )
    # Refused with an explanation: a key here is readable in /proc/<pid>/cmdline by any local user.
    p.add_argument("--api-key", help=argparse.SUPPRESS)
    p.add_argument("--llm-api-key", help=argparse.SUPPRESS)
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
    p.add_argument(
        "--log-format",
        choices=["text", "json"],
        default="text",
        help="json: one JSON object per line, with request ids, access and audit events",
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve /metrics on this loopback port instead of the API's (LCI_SERVER_METRICS_PORT)",
    )
    p.add_argument(
        "--no-metrics", action="store_true", help="no Prometheus metrics (LCI_SERVER_METRICS=0)"
    )
    p.add_argument(
        "--tracing",
        action="store_true",
        help="record OpenTelemetry traces, exported by OTLP (needs the otel extra)",
    )
    p.add_argument("--otlp-endpoint", metavar="URL", help="OTLP/HTTP endpoint of the traces")
    p.add_argument(
        "--ui",
        choices=["on", "off"],
        help="the browser playground and session console at / (default on; LCI_SERVER_UI)",
    )
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
        "llm_api_key": secret_option(
            args.llm_api_key, "--llm-api-key", args.llm_api_key_file, "--llm-api-key-file"
        ),
        "api_key_file": args.api_key_file,
        "ray_address": args.ray_address,
        "docker_runtime": args.docker_runtime,
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
        "metrics_port": args.metrics_port,
        "metrics": False if args.no_metrics else None,
        "tracing": True if args.tracing else None,
        "otlp_endpoint": args.otlp_endpoint,
        "ui": None if args.ui is None else args.ui == "on",
    }
    flags = {
        "host": "--host",
        "port": "--port",
        "max_body_bytes": "--max-body-bytes",
        "max_connections": "--max-connections",
        "allowed_hosts": "--allow-host",
        "python_blocks": "--python-blocks",
        "metrics_port": "--metrics-port",
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


def preflight(settings: Settings) -> None:
    """Say at once what `lci doctor` would: an unreachable Ray address stops the start (Ray would
    retry it for ever, the server up but unable to run a session); a docker daemon or a model
    server that does not answer is a warning with its fix (either may come up later, and much of
    lci works without a model server)."""
    from engine.cli import doctor

    if settings.ray_address:
        ray = doctor.ray_check(settings)
        if not ray.ok:
            raise UsageError(f"{ray.detail}; {ray.fix}")
    checks = [doctor.model_server_check(settings)]
    if settings.backend is BackendName.DOCKER and not settings.ray_address:
        checks.append(doctor.docker_check(settings))  # on a cluster, the nodes run docker
    for check in checks:
        if not check.ok:
            print(f"lci serve: warning: {check.detail}; fix: {check.fix}", file=sys.stderr)


async def run(args: argparse.Namespace) -> int:
    from engine.core.state_dir import UnsafeStateDir
    from engine.server import serve
    from engine.server.http.auth import KeyFileError

    settings, options = configure(args)  # a mistake is a UsageError: one line, exit 2
    check_address(options.host, options.port)
    if options.tracing and importlib.util.find_spec("opentelemetry.sdk") is None:
        raise UsageError(
            "--tracing needs OpenTelemetry: pip install -e '.[otel]' in a clone, 'lci[otel]' "
            "from a package (or unset LCI_SERVER_TRACING)"
        )
    with contextlib.ExitStack() as stack:
        if settings.llm_model == DEMO_MODEL and args.llm_base_url is None:
            # No model server: lci's scripted demo model answers, on a loopback port of its own.
            demo = stack.enter_context(DemoModel())
            settings = settings.model_copy(update={"llm_base_url": demo.base_url})
            print(f"lci: model: the scripted demo model ({demo.base_url})", file=sys.stderr)
        preflight(settings)
        try:
            return await serve(settings, options, args.log_level, args.log_format)
        except (KeyFileError, UnsafeStateDir) as exc:
            print(f"lci serve: {exc}", file=sys.stderr)  # one line: what is wrong, and the fix
            return 2
