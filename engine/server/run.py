"""Running the application under uvicorn, with a graceful shutdown: on SIGINT or SIGTERM open
requests get `shutdown_grace_s` to finish, then the lifespan closes every session."""

from __future__ import annotations

import asyncio
import gc
import logging
import resource
import signal
import sys
import tracemalloc

import uvicorn

from engine.config import Settings
from engine.server.app import create_app
from engine.server.http.connections import guarded_protocol
from engine.server.runtime.options import ServerOptions

log = logging.getLogger(__name__)


async def serve(
    settings: Settings, options: ServerOptions, log_level: str = "info", log_format: str = "text"
) -> int:
    """Serve until stopped; 0 after a clean shutdown, 1 if the server could not start.
    `log_format` json: JSON lines (see engine.observability.logs)."""
    logging.getLogger("engine").setLevel(logging.INFO)
    _raise_open_files(options.max_connections)
    config = uvicorn.Config(
        create_app(settings, options),
        host=options.host,
        port=options.port,
        log_level=log_level,
        timeout_graceful_shutdown=max(1, round(options.shutdown_grace_s)),
        # The engine is tested on the standard event loop; the HTTP parser may be the fast one.
        loop="asyncio",
        http=guarded_protocol(options.header_timeout_s, options.max_connections),
        timeout_keep_alive=max(1, round(options.keep_alive_s)),
    )
    if log_format == "json":  # after uvicorn's Config, which configures its own loggers
        from engine.observability.logs import configure_json

        configure_json()
    server = uvicorn.Server(config)
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, _dump_tasks)
    cluster = (
        f", sessions on the Ray cluster at {settings.ray_address}" if settings.ray_address else ""
    )
    print(
        f"lci: serving on http://{options.host}:{options.port} "
        f"(model server {settings.llm_base_url}, backend {settings.backend.value}, "
        f"auth {'on' if settings.api_key else 'off'}{cluster})",
        file=sys.stderr,
        flush=True,
    )
    await server.serve()
    return 0 if server.started else 1


def _dump_tasks() -> None:
    """SIGUSR1 writes what every task waits on to the log (its whole chain of awaits, which a
    task's own stack does not show): what a request that seems stuck waits for. With
    PYTHONTRACEMALLOC set, it also writes where memory grew most since the previous SIGUSR1."""
    for task in asyncio.all_tasks():
        log.warning("task %s:\n%s", task.get_name(), "\n".join(_awaiting(task.get_coro())))
    if tracemalloc.is_tracing():
        global _last_snapshot
        snapshot = tracemalloc.take_snapshot()
        if _last_snapshot is not None:
            growth = snapshot.compare_to(_last_snapshot, "lineno")[:25]
            log.warning("memory growth since the last dump:\n%s", "\n".join(map(str, growth)))
        _last_snapshot = snapshot


_last_snapshot: tracemalloc.Snapshot | None = None


def _awaiting(coro: object) -> list[str]:
    lines = []
    while coro is not None:
        frame = next(
            (
                f
                for name in ("cr_frame", "ag_frame", "gi_frame")
                if (f := getattr(coro, name, None))
            ),
            None,
        )
        if frame is not None:
            lines.append(f"  {frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}")
        awaited = next(
            (a for n in ("cr_await", "ag_await", "gi_yieldfrom") if (a := getattr(coro, n, None))),
            None,
        )
        if awaited is None and frame is None:
            # `async for` awaits an asend object, which names its generator only to the GC.
            awaited = next((r for r in gc.get_referents(coro) if hasattr(r, "ag_frame")), None)
        coro = awaited
    return lines


def _raise_open_files(connections: int) -> None:
    """Room for every allowed connection plus the sessions' pipes: running out of descriptors
    makes accept() fail for everyone, the starvation the connection cap prevents."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 2 * connections + 1024
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, target), hard))
