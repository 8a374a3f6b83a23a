"""`lci serve` as a process: where it listens, running without auth, and a graceful shutdown that
closes every session (no sandbox process survives the server)."""

from __future__ import annotations

import argparse
import contextlib
import signal
import threading
import time

import httpx
import psutil
import pytest

from engine.cli.serve import add_parser, configure
from tests.server.helpers import FakeModel, LciServer


def test_defaults_bind_to_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LCI_API_KEY", raising=False)
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    settings, options = configure(parser.parse_args(["serve"]))
    assert (options.host, options.port) == ("127.0.0.1", 8000)
    assert settings.api_key is None  # auth only when asked for


def test_graceful_shutdown_closes_every_session(shared_fake: FakeModel) -> None:
    env = {"LCI_SERVER_SHUTDOWN_GRACE_S": "1"}
    args = ["--log-level", "info"]  # uvicorn reports the completed shutdown at info level
    with LciServer(shared_fake.base_url, env=env, args=args) as server:  # no API key: auth is off
        listening = [
            c.laddr
            for c in psutil.Process(server.process.pid).net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN
        ]
        assert [(a.ip, a.port) for a in listening] == [("127.0.0.1", server.port)]
        with httpx.Client(base_url=server.url, timeout=30) as client:
            ids = [client.post("/v1/sessions").json()["id"] for _ in range(3)]
            running = threading.Thread(
                target=_run_quietly,
                args=(server.url, f"/v1/sessions/{ids[0]}/execute"),
                daemon=True,
            )
            running.start()
            deadline = time.monotonic() + 10
            while client.get(f"/v1/sessions/{ids[0]}").json()["state"] != "busy":
                assert time.monotonic() < deadline
                time.sleep(0.05)
        sandboxes = psutil.Process(server.process.pid).children(recursive=True)
        assert sandboxes, "the sessions run no processes?"
        started = time.monotonic()
        status = server.stop()
        took = time.monotonic() - started
        running.join(10)
        # After its graceful shutdown uvicorn raises the SIGTERM it handled again, now with the
        # default action: the process ends killed by the signal, not with an exit code.
        assert status == -signal.SIGTERM, server.logs()
        assert took < 15
        _, alive = psutil.wait_procs(sandboxes, timeout=5)
        assert alive == [], [p.info for p in alive if hasattr(p, "info")]
        assert "Application shutdown complete" in server.logs()


def _run_quietly(url: str, path: str) -> None:
    with contextlib.suppress(httpx.HTTPError):  # the server goes away, as intended
        httpx.post(url + path, json={"code": "import time\ntime.sleep(60)"}, timeout=60)
