"""What the browser app adds to the application: its page and static assets, unless the server
was started with `--ui off` (`LCI_SERVER_UI=0`)."""

from engine.server.runtime.options import ServerOptions
from engine.server.runtime.surface import Surface
from engine.server.ui.pages import routes


def surface(options: ServerOptions) -> Surface:
    return Surface(name="ui", routes=routes() if options.ui else ())
