"""What the session API adds to the application: its routers (sessions, execution, files, the
workdir tree, signed file URLs, commands and terminals, snapshots and forks), the signed URLs' own
authorization, and the secret that signs them."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from engine.server.runtime.state import ServerState
from engine.server.runtime.surface import Surface
from engine.server.sessions import commands, pty, signed, snapshots, tree
from engine.server.sessions.api import router
from engine.server.sessions.signing import PREFIX, UrlSigner


def _is_upload(path: str) -> bool:
    return (path.startswith("/v1/sessions/") and path.endswith("/files")) or path.startswith(PREFIX)


@asynccontextmanager
async def running(state: ServerState) -> AsyncIterator[None]:
    state.attach(UrlSigner.load(state.settings.state_dir))
    yield


def surface() -> Surface:
    return Surface(
        name="sessions",
        routers=(
            router,
            tree.router,
            signed.router,
            commands.router,
            pty.router,
            snapshots.router,
        ),
        is_upload=_is_upload,
        # A signed file URL carries its signature instead of the key: the gate asks `authorize`.
        delegated={PREFIX: signed.authorize},
        running=running,
    )
