"""What the DashScope surface adds to the application: the native generation route."""

from engine.server.dashscope.api import router
from engine.server.runtime.surface import Surface


def surface() -> Surface:
    return Surface(name="dashscope", routers=(router,))
