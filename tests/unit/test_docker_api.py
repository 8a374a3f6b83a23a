"""The Docker SDK boundary against a stand-in daemon: a daemon that went away is BackendUnavailable,
and the failed connects leave no socket open behind (the SDK's own transport would)."""

from __future__ import annotations

import http.server
import os
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.core.backends.docker.api import DockerAPI
from engine.errors import BackendUnavailable


class _Daemon(http.server.BaseHTTPRequestHandler):
    """Just enough of the Engine API for a client to connect; one request per connection."""

    def do_GET(self) -> None:
        body = b'{"ApiVersion": "1.41"}' if self.path.endswith("/version") else b"OK"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socketserver.BaseServer]:
    path = tmp_path / "docker.sock"
    server = socketserver.UnixStreamServer(str(path), _Daemon)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
        path.unlink(missing_ok=True)


def _open_sockets() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:
            continue  # the listing's own descriptor, closed by now
    return count


def test_a_daemon_that_went_away_leaves_no_socket_open(
    daemon: socketserver.UnixStreamServer,
) -> None:
    api = DockerAPI(timeout_s=5)
    try:
        api.ping()
        daemon.shutdown()
        daemon.server_close()
        Path(daemon.server_address).unlink()  # type: ignore[arg-type]
        before = _open_sockets()
        failures = []
        for _ in range(3):
            with pytest.raises(BackendUnavailable, match="not reachable") as gone:
                api.ping()
            failures.append(gone.value)  # kept, with the traceback of each failed connect
        assert _open_sockets() == before
        assert api.outages == 3
    finally:
        api.close()
