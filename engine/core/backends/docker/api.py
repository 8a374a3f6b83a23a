"""The one module that talks to the Docker SDK: a narrow client for the calls the docker
backend needs, with every foreign exception translated here, at the boundary, chained with `from`.

    docker.errors.ImageNotFound            -> ImageNotFound (says how to build the image)
    connection refused / timeout / no API  -> BackendUnavailable (the daemon is not reachable)
    any other docker.errors.APIError       -> SandboxError (the daemon refused the request)

Every method blocks; async callers run them through `asyncio.to_thread`, so the event loop never
waits on the daemon. The attach stream is handed over as a plain socket that the caller drives with
the event loop.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

import docker
import docker.errors
import requests.exceptions
from docker.transport.unixconn import UnixHTTPConnection

from engine.core.backends.docker.leaks import close_leaked_sockets
from engine.errors import BackendUnavailable, ImageNotFound, LCIError, SandboxError

T = TypeVar("T")
_ATTACH = {"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
_BUILD_HINT = "build it with `lci image build`"


# What a client is told to wait when the daemon is away: a restart takes a few seconds.
DAEMON_RETRY_S = 5.0


# docker-py's unix transport does not close the socket of a connect that fails (the daemon is gone
# or restarting; docker/docker-py#3356): it stays open while the failure's traceback lives, then
# warns wherever the garbage collector happens to run. The engine closes it.
_UNIX_CONNECT = UnixHTTPConnection.connect.__code__


def translate(exc: Exception, what: str) -> LCIError:
    """The engine error for a failure of the Docker SDK while doing `what` (and the socket the
    SDK leaked in it, if any, closed)."""
    close_leaked_sockets(exc, _UNIX_CONNECT)
    if isinstance(exc, docker.errors.ImageNotFound):
        return ImageNotFound(f"{what}: image not found ({exc.explanation}); {_BUILD_HINT}")
    if isinstance(exc, docker.errors.APIError):
        if exc.is_server_error():  # the daemon failing (shutting down, restarting), not refusing
            return BackendUnavailable(
                f"{what}: the Docker daemon failed: {exc.explanation or exc}", DAEMON_RETRY_S
            )
        return SandboxError(f"{what}: Docker refused: {exc.explanation or exc}")
    if isinstance(exc, requests.exceptions.RequestException | docker.errors.DockerException):
        return BackendUnavailable(
            f"{what}: the Docker daemon is not reachable ({exc})", DAEMON_RETRY_S
        )
    return SandboxError(f"{what}: {exc}")


def _is_missing(exc: Exception) -> bool:
    return isinstance(exc, docker.errors.NotFound)


def _is_conflict(exc: Exception) -> bool:
    # 409: not running (kill), removal already in progress (remove)
    return isinstance(exc, docker.errors.APIError) and exc.status_code == 409


def _probe_local_socket() -> None:
    """Fail fast, before the SDK is involved, when nothing listens on the daemon's unix socket:
    docker-py leaks the socket of a failed connect (docker/docker-py#3356), which would surface as
    a ResourceWarning on every attempt on a host without Docker."""
    host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    if not host.startswith("unix://"):
        return
    path = host.removeprefix("unix://")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(5)
        try:
            probe.connect(path)
        except OSError as exc:
            raise BackendUnavailable(
                f"no Docker daemon is listening on {path} ({exc.strerror or exc}); start dockerd, "
                "set DOCKER_HOST, or use the subprocess backend"
            ) from exc


def _own_socket(raw: Any) -> socket.socket:
    """A plain socket for a connection the SDK hijacked (attach, exec)."""
    inner = getattr(raw, "_sock", raw)
    try:
        if type(inner) is not socket.socket:
            raise BackendUnavailable(
                "the docker backend needs a daemon socket it can read directly "
                "(unix:// or plain tcp://), not TLS or ssh"
            )
        # Our own descriptor for the same connection, so the SDK's objects can be closed
        # now rather than left for the garbage collector (which would warn about them).
        return socket.socket(fileno=os.dup(inner.fileno()))
    finally:
        response = getattr(raw, "_response", None)
        for obj in (response, raw, inner):
            if obj is not None:
                with contextlib.suppress(Exception):
                    obj.close()


class DockerAPI:
    """The docker SDK calls the backend makes. Every method blocks (call it through
    `asyncio.to_thread` from async code) and raises only engine errors."""

    def __init__(self, timeout_s: float = 60) -> None:
        """Connect to the daemon named by the environment (DOCKER_HOST, or the local socket) and
        check that it answers; BackendUnavailable otherwise."""
        _probe_local_socket()
        try:
            self._client = docker.from_env(timeout=int(timeout_s), max_pool_size=32)
        except docker.errors.DockerException as exc:
            close_leaked_sockets(exc, _UNIX_CONNECT)
            raise BackendUnavailable(
                f"no Docker daemon is reachable ({exc}); start dockerd, set DOCKER_HOST, "
                "or use the subprocess backend"
            ) from exc
        self._api = self._client.api
        self.outages = 0  # calls that found the daemon unreachable or failing (see `_guard`)
        try:
            self._guard("pinging the Docker daemon", self._api.ping)
        except LCIError:
            self._client.close()
            raise

    def _guard(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except LCIError:
            raise
        except Exception as exc:
            raise self._translate(exc, what) from exc

    def _translate(self, exc: Exception, what: str) -> LCIError:
        error = translate(exc, what)
        if isinstance(error, BackendUnavailable):
            self.outages += 1  # what this call should have cleaned up may be left behind
        return error

    def close(self) -> None:
        self._client.close()

    # -- images ----------------------------------------------------------------------------------
    def inspect_image(self, image: str) -> tuple[str, dict[str, str]]:
        """The id and labels of a local image; ImageNotFound if there is none."""
        try:
            info = self._api.inspect_image(image)
        except docker.errors.ImageNotFound as exc:
            raise ImageNotFound(
                f"the sandbox image {image!r} is not available to the Docker daemon; "
                f"{_BUILD_HINT} (or pull it, or point LCI_DOCKER_IMAGE at another image)"
            ) from exc
        except Exception as exc:
            raise translate(exc, f"inspecting image {image!r}") from exc
        labels = (info.get("Config") or {}).get("Labels") or {}
        return str(info["Id"]), {str(k): str(v) for k, v in labels.items()}

    # -- containers ------------------------------------------------------------------------------
    def create(self, image: str, spec: dict[str, Any], host: dict[str, Any]) -> str:
        """Create (not start) a container and return its id; `spec` holds create_container
        arguments, `host` create_host_config ones."""

        def create() -> str:
            host_config = self._api.create_host_config(**host)
            return str(self._api.create_container(image, host_config=host_config, **spec)["Id"])

        return self._guard(f"creating a container from {image!r}", create)

    def attach(self, container_id: str) -> socket.socket:
        """A connected socket carrying the container's stdin (written) and its multiplexed
        stdout/stderr (read). Attach before `start`, so nothing written at start-up is missed."""
        return self._guard("attaching to the container", self._attach, container_id)

    def _attach(self, container_id: str) -> socket.socket:
        return _own_socket(self._api.attach_socket(container_id, params=dict(_ATTACH)))

    def start(self, container_id: str) -> None:
        self._guard("starting the container", self._api.start, container_id)

    def _tolerant(self, what: str, fn: Callable[..., None], *args: Any, **kwargs: Any) -> None:
        """`_guard` for calls aimed at a container that may already be gone or stopping: a
        missing container or a 409 conflict means the work is done (or being done) already."""
        try:
            fn(*args, **kwargs)
        except Exception as exc:
            if not (_is_missing(exc) or _is_conflict(exc)):
                raise self._translate(exc, what) from exc

    def signal(self, container_id: str, signal: str) -> None:
        """Send a signal to the container's init, which forwards it to the agent. A container
        that is gone or no longer running is not an error."""
        self._tolerant(
            f"sending {signal} to the container", self._api.kill, container_id, signal=signal
        )

    def remove(self, container_id: str) -> None:
        """Kill the container (SIGKILL to its init takes its whole pid namespace down) and delete
        it. One already gone, or already being removed, is not an error."""
        self._tolerant(
            "removing the container", self._api.remove_container, container_id, force=True, v=True
        )

    def running(self, container_id: str) -> bool:
        """Whether the container exists and is running."""

        def state() -> bool:
            try:
                found = self._api.inspect_container(container_id)
            except docker.errors.NotFound:
                return False
            return bool((found.get("State") or {}).get("Running"))

        return self._guard("inspecting a container", state)

    def exit_status(self, container_id: str) -> tuple[int | None, bool]:
        """(exit code, whether the OOM killer struck) of a container that has stopped."""

        def status() -> tuple[int | None, bool]:
            code = self._api.wait(container_id, timeout=30).get("StatusCode")
            state = self._api.inspect_container(container_id).get("State") or {}
            return code, bool(state.get("OOMKilled"))

        return self._guard("reading the container's exit status", status)

    def rename(self, container_id: str, name: str) -> None:
        # Cosmetic, and run in the background where nobody awaits it: any failure (a name
        # clash, a vanished container, a daemon gone) is dropped.
        with contextlib.suppress(LCIError):
            self._guard("renaming the container", self._api.rename, container_id, name)

    # -- networks --------------------------------------------------------------------------------
    def ensure_network(self, name: str, labels: dict[str, str]) -> None:
        """A bridge network for sandboxes with the network, on which containers cannot reach each
        other (inter-container communication off); one of that name already there is kept."""

        def create() -> None:
            try:
                self._api.create_network(
                    name,
                    driver="bridge",
                    options={"com.docker.network.bridge.enable_icc": "false"},
                    labels=labels,
                    check_duplicate=True,
                )
            except Exception as exc:
                if not _is_conflict(exc):
                    raise

        self._guard("creating the sandboxes' network", create)

    def remove_network(self, name: str) -> None:
        self._tolerant("removing the sandboxes' network", self._api.remove_network, name)

    def labelled_networks(self, label: str) -> list[tuple[str, dict[str, str]]]:
        """(id, labels) of every network that carries `label`."""

        def listing() -> list[tuple[str, dict[str, str]]]:
            found = self._api.networks(filters={"label": label})
            return [(str(n["Id"]), dict(n.get("Labels") or {})) for n in found]

        return self._guard("listing networks", listing)

    def labelled(self, label: str) -> list[tuple[str, dict[str, str]]]:
        """(id, labels) of every container, running or not, that carries `label` (`key` or
        `key=value`)."""

        def listing() -> list[tuple[str, dict[str, str]]]:
            found = self._api.containers(all=True, filters={"label": label})
            return [(str(c["Id"]), dict(c.get("Labels") or {})) for c in found]

        return self._guard("listing containers", listing)

    # -- volumes ---------------------------------------------------------------------------------
    def create_volume(self, name: str, labels: dict[str, str], options: dict[str, str]) -> None:
        """A volume of the `local` driver (`options` are its driver options)."""
        self._guard(
            f"creating the volume {name}",
            self._api.create_volume,
            name,
            driver="local",
            driver_opts=options,
            labels=labels,
        )

    def remove_volume(self, name: str) -> None:
        """Delete a volume; one already gone is not an error, one still in use is (409)."""
        try:
            self._api.remove_volume(name, force=True)
        except Exception as exc:
            if not _is_missing(exc):
                raise translate(exc, f"removing the volume {name}") from exc

    def holders(self, volume: str) -> list[str]:
        """The ids of the containers, running or not, that mount `volume`."""

        def listing() -> list[str]:
            found = self._api.containers(all=True, filters={"volume": volume})
            return [str(c["Id"]) for c in found]

        return self._guard("listing a volume's containers", listing)

    def not_running(self, label: str) -> list[tuple[str, str, float]]:
        """(id, state, age in seconds) of the containers carrying `label` that were created and
        never started, or have exited or died."""

        def listing() -> list[tuple[str, str, float]]:
            filters = {"label": label, "status": ["created", "exited", "dead"]}
            return [
                (str(c["Id"]), str(c.get("State")), time.time() - float(c.get("Created") or 0))
                for c in self._api.containers(all=True, filters=filters)
            ]

        return self._guard("listing containers that do not run", listing)

    def unused_volumes(self, label: str) -> list[tuple[str, float]]:
        """(name, age in seconds) of every volume carrying `label` that no container mounts."""

        def listing() -> list[tuple[str, float]]:
            filters = {"label": label, "dangling": True}
            found = self._api.volumes(filters=filters).get("Volumes") or []
            now = datetime.now(UTC)
            return [
                (str(v["Name"]), (now - datetime.fromisoformat(v["CreatedAt"])).total_seconds())
                for v in found
            ]

        return self._guard("listing unused volumes", listing)

    def labelled_volumes(self, label: str) -> list[tuple[str, dict[str, str]]]:
        """(name, labels) of every volume that carries `label` (`key` or `key=value`)."""

        def listing() -> list[tuple[str, dict[str, str]]]:
            found = self._api.volumes(filters={"label": label}).get("Volumes") or []
            return [(str(v["Name"]), dict(v.get("Labels") or {})) for v in found]

        return self._guard("listing volumes", listing)

    # -- files, through the daemon -----------------------------------------------------------------
    def put_archive(self, container_id: str, path: str, chunks: bytes | Iterator[bytes]) -> None:
        """Unpack the tar stream `chunks` into the directory `path` of the container (sent as it
        is produced, chunked)."""
        self._guard(
            "uploading into the container", self._api.put_archive, container_id, path, chunks
        )

    def stats(self, container_id: str) -> dict[str, Any]:
        """One sample of a container's resource use (the daemon's stats, not a stream)."""
        call = self._api.stats
        return self._guard("reading stats", call, container_id, stream=False, one_shot=True)

    def exec_socket(self, container_id: str, argv: list[str], user: str) -> socket.socket:
        """Run `argv` in the running container as `user`, with a connected socket carrying its
        stdin (written) and its multiplexed stdout/stderr (read), as `attach` does. The process
        reads EOF on its stdin when the socket is closed."""

        def start() -> socket.socket:
            exec_id = self._api.exec_create(
                container_id, argv, user=user, stdin=True, stdout=True, stderr=True
            )["Id"]
            return _own_socket(self._api.exec_start(exec_id, socket=True))

        return self._guard("starting a helper in the container", start)

    def runtime_program(self, name: str) -> str:
        """The daemon's program (path or shim type) for runtime `name`; "" for an unknown name."""
        runtimes = self._guard("reading the Docker daemon's runtimes", self._api.info)
        entry = (runtimes.get("Runtimes") or {}).get(name) or {}
        return str(entry.get("path") or entry.get("runtimeType") or "")

    def ping(self) -> None:
        """BackendUnavailable unless the daemon answers."""
        self._guard("pinging the Docker daemon", self._api.ping)


def unavailable_reason(image: str) -> str | None:
    """Why docker sessions with `image` cannot start here (no daemon answers, the image is
    missing), or None. Goes through DockerAPI, which fails cleanly when no daemon listens (the
    bare SDK leaks a socket then)."""
    try:
        api = DockerAPI(timeout_s=30)
    except LCIError as exc:
        return exc.message
    try:
        api.inspect_image(image)
    except LCIError as exc:
        return exc.message
    finally:
        api.close()
    return None
