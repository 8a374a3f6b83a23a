"""What MCP adds to the application: the streamable HTTP transport at `/mcp`, which runs the SDK's
session manager for as long as the server runs."""

from engine.server.mcp.http import McpEndpoint
from engine.server.runtime.options import ServerOptions
from engine.server.runtime.surface import Surface


def surface(options: ServerOptions, version: str) -> Surface:
    endpoint = McpEndpoint(options, version)
    return Surface(name="mcp", routes=tuple(endpoint.routes), running=endpoint.running)
