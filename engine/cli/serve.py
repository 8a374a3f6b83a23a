"""`lci serve`: the HTTP server (OpenAI- and DashScope-compatible code interpreter, session API).

Options override `LCI_*` environment variables (`LCI_LLM_BASE_URL`, `LCI_LLM_MODEL`,
`LCI_LLM_API_KEY`, `LCI_BACKEND`, `LCI_API_KEY`, `LCI_LIMITS`, ...) and `LCI_SERVER_*` ones
(`LCI_SERVER_MAX_BODY_BYTES`, `LCI_SERVER_ALLOW_NON_STREAM`, ...). It binds to 127.0.0.1 unless told
otherwise; on SIGINT or SIGTERM it lets open requests finish briefly, then closes every session.
"""

from __future__ import annotations

import argparse
from typing import Any

from engine.config import Settings
from engine.models import BackendName
from engine.server.options import ServerOptions


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
    p.add_argument("--llm-model", help="model used when a request names none")
    p.add_argument("--llm-api-key", help="API key of the model server")
    p.add_argument("--api-key", help="require this bearer token from clients")
    p.add_argument("--max-body-bytes", type=int, help="largest request body (default 8 MiB)")
    p.add_argument(
        "--python-blocks",
        choices=["auto", "on", "off"],
        help="run ```python blocks of the model's text as code (default auto: until the model "
        "makes a native tool call)",
    )
    p.add_argument("--log-level", default="info", help="uvicorn log level (default info)")
    return p


def configure(args: argparse.Namespace) -> tuple[Settings, ServerOptions]:
    """Settings and server options from the environment, overridden by the given options."""
    overrides = {
        "backend": args.backend,
        "llm_base_url": args.llm_base_url,
        "llm_model": args.llm_model,
        "llm_api_key": args.llm_api_key,
        "api_key": args.api_key,
    }
    settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    server = {
        "host": args.host,
        "port": args.port,
        "max_body_bytes": args.max_body_bytes,
        "python_blocks": args.python_blocks,
    }
    options = ServerOptions(**{k: v for k, v in server.items() if v is not None})
    return settings, options


async def run(args: argparse.Namespace) -> int:
    from engine.server import serve

    settings, options = configure(args)
    return await serve(settings, options, args.log_level)
