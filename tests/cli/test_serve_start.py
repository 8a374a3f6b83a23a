"""`lci serve` says at start what `lci doctor` knows: an unreachable Ray address is an error within
seconds (not "serving on" and Ray retrying for ever), a docker daemon or a model server that does
not answer is a warning with its fix, and the server starts anyway."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx

from tests.cli.helpers import lci
from tests.server.helpers import FakeModel, LciServer


def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_an_unreachable_ray_address_is_an_error_not_a_hang(tmp_path: Path) -> None:
    address = f"127.0.0.1:{closed_port()}"
    # The helper's own timeout (120 s) is what a hang would run into.
    done = lci("serve", "--port", "0", "--ray-address", address, state_dir=tmp_path / "state")
    assert done.returncode == 2
    assert "serving on" not in done.stderr
    assert done.stderr.startswith(
        f"lci serve: cannot reach the Ray cluster at {address} (Connection refused); "
    )
    assert "ray start --head" in done.stderr and len(done.stderr.splitlines()) == 1


def test_no_docker_daemon_and_no_model_server_are_warnings_with_the_fix(tmp_path: Path) -> None:
    model = f"http://127.0.0.1:{closed_port()}/v1"
    missing = tmp_path / "no-docker.sock"
    docker = {"DOCKER_HOST": f"unix://{missing}"}
    with LciServer(model, env=docker, args=["--backend", "docker"]) as server:
        assert httpx.get(server.url + "/health", timeout=10).status_code == 200  # it started
        server.stop()
        logs = server.logs()
    lines = logs.splitlines()
    serving = next(i for i, line in enumerate(lines) if "lci: serving on" in line)
    warnings = [line for line in lines[:serving] if line.startswith("lci serve: warning: ")]
    assert len(warnings) == 2, lines
    model_line = next(line for line in warnings if "model server" in line)
    assert f"no model server at {model} (Connection refused)" in model_line
    assert "fix: start an OpenAI-compatible model server there" in model_line
    docker_line = next(line for line in warnings if "model server" not in line)
    assert "fix: start the Docker daemon" in docker_line


def test_a_healthy_start_has_no_warning() -> None:
    with FakeModel() as fake, LciServer(fake.base_url) as server:
        server.stop()
        assert "warning" not in server.logs()
