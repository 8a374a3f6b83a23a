"""What the session API adds to the application: its routers (sessions, execution, files,
commands and terminals)."""

from engine.server.runtime.surface import Surface
from engine.server.sessions import commands, pty
from engine.server.sessions.api import router


def _is_upload(path: str) -> bool:
    return path.startswith("/v1/sessions/") and path.endswith("/files")


def surface() -> Surface:
    return Surface(
        name="sessions", routers=(router, commands.router, pty.router), is_upload=_is_upload
    )
