"""What the application adds for E2B: its routers, in order, and the routing middleware. (Kept out of
the package's `__init__` so that `engine.server.runtime.state` can import the registry without the routes.)"""

from engine.server.e2b.files import router as files_router
from engine.server.e2b.interpreter import router as interpreter_router
from engine.server.e2b.lifecycle import router as lifecycle_router
from engine.server.e2b.routing import PREFIX, SandboxRouting

# Order matters: the files router ends with a catch-all for envd's unimplemented services.
ROUTERS = (lifecycle_router, interpreter_router, files_router)

__all__ = ["PREFIX", "ROUTERS", "SandboxRouting"]
