"""A client of `lci serve`'s session API, sync and async, with live output over server-sent events.

    from engine.client import Client

    with Client("http://127.0.0.1:8000") as client:
        session = client.create_session(limits={"timeout_s": 10})
        session.execute("print('hi')", on_stdout=print)
        session.close()

Server errors come back as the engine's own exceptions (`SessionBusy`, `SessionNotFound`, ...).
"""

from engine.client.aio import AsyncClient, AsyncRemoteSession
from engine.client.sync import Client, RemoteSession

__all__ = ["AsyncClient", "AsyncRemoteSession", "Client", "RemoteSession"]
