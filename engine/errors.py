"""The one exception hierarchy of lci. Every class has a stable `code` that the server maps to an
HTTP status in one table; foreign exceptions are translated at the module that imports their library
and chained with `from`.

    LCIError                       code
    ├── InvalidRequest             invalid_request
    │   ├── FileAccessError        file_access
    │   ├── BadParameter           invalid_request       (names the offending `param`)
    │   └── PayloadTooLarge        payload_too_large
    ├── NotFound                   not_found
    │   ├── SessionNotFound        session_not_found
    │   ├── FileNotFound           file_not_found
    │   ├── SnapshotNotFound       snapshot_not_found    (a snapshot id of the session)
    │   ├── ResponseNotFound       response_not_found    (a previous_response_id)
    │   ├── ContainerNotFound      container_not_found   (a code_interpreter container)
    │   └── SandboxNotFound        sandbox_not_found     (an E2B sandbox id, on the control plane)
    ├── ContainerExpired           container_expired     (its session is gone; metadata kept)
    ├── Unauthorized               unauthorized
    ├── Forbidden                  forbidden             (a credential valid for something else)
    ├── SessionBusy                session_busy
    ├── SessionClosed              session_closed
    ├── SessionLost                session_lost          (its state and files are gone)
    ├── SnapshotsUnavailable       snapshots_unavailable (this sandbox cannot keep snapshots)
    ├── CapacityExceeded           capacity_exceeded
    ├── NotImplementedHere         not_implemented       (a compatible API's feature lci lacks)
    ├── SandboxNotRunning          sandbox_not_running   (an E2B sandbox id, on the data plane)
    ├── SandboxError               sandbox_error
    │   ├── SandboxStartError      sandbox_start_failed
    │   ├── ProtocolError          protocol_error
    │   └── BackendUnavailable     backend_unavailable
    │       └── ImageNotFound      image_not_found
    ├── UpstreamError              upstream_error        (the model server failed)
    └── ServerUnavailable          server_unavailable    (engine.client: lci serve unreachable)

Errors raised by user code are never exceptions here: they are data in `Execution.error`.
"""

from __future__ import annotations


class LCIError(Exception):
    code = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(LCIError):
    code = "invalid_request"


class FileAccessError(InvalidRequest):
    """A path that leaves the workdir, a non-regular file, or a file over the size cap."""

    code = "file_access"


class NotFound(LCIError):
    code = "not_found"


class SessionNotFound(NotFound):
    code = "session_not_found"


class BadParameter(InvalidRequest):
    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class PayloadTooLarge(InvalidRequest):
    code = "payload_too_large"


class _NamedNotFound(NotFound):
    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class FileNotFound(_NamedNotFound):
    code = "file_not_found"


class SnapshotNotFound(_NamedNotFound):
    """The session has no snapshot of that id (never taken, deleted, or lost with a restart)."""

    code = "snapshot_not_found"


class CommandNotFound(NotFound):
    """No running (or recently ended) command of the session has that pid or tag."""

    code = "command_not_found"


class CommandStartFailed(InvalidRequest):
    """The sandbox could not start the command (no such program or directory, no processes left)."""

    code = "command_failed"


class ResponseNotFound(_NamedNotFound):
    code = "response_not_found"


class ContainerNotFound(_NamedNotFound):
    code = "container_not_found"


class ContainerExpired(LCIError):
    """A container whose session expired or was closed: it can be looked at, not used."""

    code = "container_expired"

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class SandboxNotFound(_NamedNotFound):
    code = "sandbox_not_found"


class Unauthorized(LCIError):
    code = "unauthorized"


class Forbidden(LCIError):
    """The request's credential is valid, but not for what it asks (a signed URL's operation)."""

    code = "forbidden"


class SessionBusy(LCIError):
    code = "session_busy"


class SessionClosed(LCIError):
    code = "session_closed"


class SessionLost(LCIError):
    """The session cannot go on: what it stood on is gone (its cluster node died, or its working
    directory's storage died with a Docker daemon restart). Every later call says so, until the
    session is deleted."""

    code = "session_lost"

    @classmethod
    def of(cls, session_id: str, reason: str) -> SessionLost:
        return cls(f"session {session_id} is lost: {reason}; delete it and start a new one")


class SnapshotsUnavailable(LCIError):
    """The session's sandbox cannot keep a snapshot now (its agent runs without the relay, or
    the snapshot could not be taken); the message says which."""

    code = "snapshots_unavailable"


class CapacityExceeded(LCIError):
    """A cap that protects the host was reached; `retry_after_s` hints when to try again."""

    code = "capacity_exceeded"

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class NotImplementedHere(LCIError):
    code = "not_implemented"


class SandboxNotRunning(LCIError):
    """A sandbox-addressed request (E2B's data plane) names a sandbox that does not exist (any
    more): E2B's edge answers this with 502 and the SDKs read it as "killed or timed out"."""

    code = "sandbox_not_running"


class SandboxError(LCIError):
    code = "sandbox_error"


class SandboxStartError(SandboxError):
    code = "sandbox_start_failed"


class ProtocolError(SandboxError):
    """The sandbox sent something that is not a valid frame: it is treated as a crash."""

    code = "protocol_error"


class BackendUnavailable(SandboxError):
    """The backend cannot serve now; `retry_after_s` when it is likely back soon (a Docker daemon
    restarting)."""

    code = "backend_unavailable"

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ImageNotFound(BackendUnavailable):
    code = "image_not_found"


class UpstreamError(LCIError):
    code = "upstream_error"

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ServerUnavailable(LCIError):
    """`engine.client` could not reach `lci serve`, or the server dropped the connection (it
    stopped, or restarted) before answering. Raised by the client only: no server sends it."""

    code = "server_unavailable"


def _classes_by_code() -> dict[str, type[LCIError]]:
    found: dict[str, type[LCIError]] = {}
    pending: list[type[LCIError]] = [LCIError]
    while pending:
        cls = pending.pop(0)  # breadth first: the most general class of a shared code wins
        found.setdefault(cls.code, cls)
        pending.extend(cls.__subclasses__())
    return found


def from_code(
    code: str,
    message: str,
    *,
    param: str | None = None,
    retry_after_s: float | None = None,
    status: int | None = None,
) -> LCIError:
    """The exception an error reported elsewhere (an HTTP error body, a cluster actor's reply)
    stands for, chosen by its stable `code`: `invalid_request` with a `param` is BadParameter; an
    unknown code is an LCIError that keeps it. The details go to the classes that carry them."""
    if code == InvalidRequest.code and param:
        cls: type[LCIError] = BadParameter
    else:
        cls = _BY_CODE.get(code, LCIError)
    exc = cls(message)
    if cls is LCIError:
        exc.code = code
    for name, value in (("param", param), ("retry_after_s", retry_after_s), ("status", status)):
        if value is not None and hasattr(exc, name):
            setattr(exc, name, value)
    return exc


_BY_CODE = _classes_by_code()
