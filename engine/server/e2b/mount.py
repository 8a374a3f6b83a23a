"""What the E2B surface adds to the application: its routers, in order, the routing middleware that
moves sandbox-addressed requests under `PREFIX`, and its sandboxes."""

from engine.server.e2b.files import router as files_router
from engine.server.e2b.filesystem import router as filesystem_router
from engine.server.e2b.interpreter import router as interpreter_router
from engine.server.e2b.lifecycle import router as lifecycle_router
from engine.server.e2b.process import router as process_router
from engine.server.e2b.routing import PREFIX, SandboxRouting, authorize
from engine.server.e2b.snapshots import router as snapshots_router
from engine.server.e2b.state import running
from engine.server.e2b.watchers import router as watchers_router
from engine.server.runtime.surface import Surface


def _is_upload(path: str) -> bool:
    return path == PREFIX + "/files"


def surface() -> Surface:
    return Surface(
        name="e2b",
        # Order matters: the files router ends with a catch-all for envd's unimplemented services,
        # the lifecycle router with one for the sandbox actions lci lacks.
        routers=(
            snapshots_router,
            lifecycle_router,
            interpreter_router,
            filesystem_router,
            watchers_router,
            process_router,
            files_router,
        ),
        is_upload=_is_upload,
        # Sandbox-addressed requests carry the sandbox's token, not the key: the gate asks
        # `authorize` before reading their bodies, and `sandbox_of` checks it again per route.
        delegated={PREFIX + "/": authorize},
        middleware=(SandboxRouting,),
        running=running,
    )
