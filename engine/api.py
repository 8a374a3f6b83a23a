"""The embedding API: the async core, and typed sync wrappers of it.

Async code uses `SessionManager` directly. Sync code wraps it once:

    from engine import SessionManager, blocking

    with blocking(SessionManager()) as manager:
        session = manager.create()
        print(session.execute("6 * 7").result_text)   # 42

`blocking` runs the event loop in a background thread and forwards each call through it. The
wrappers spell out every method with its types, so editors complete them and mypy checks them.
Ctrl-C while a sync `execute` waits interrupts the cell (the session stays usable, its state kept)
and then raises KeyboardInterrupt in the caller, as in a notebook.
"""

from __future__ import annotations

import contextlib
import functools
import signal
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from types import TracebackType
from typing import Any, TypeVar, Unpack

from anyio.from_thread import BlockingPortal, start_blocking_portal

from engine.callbacks import OutputCallbackArgs, OutputCallbacks
from engine.command_models import CommandInfo, CommandRequest, CommandResult
from engine.core.commands import Command, CommandService
from engine.core.manager import SessionManager
from engine.core.session import Session
from engine.core.session_tree import WorkdirTree
from engine.models import (
    Execution,
    FileEntry,
    FileInfo,
    ForkResult,
    SessionInfo,
    SessionSpec,
    SessionState,
    SnapshotInfo,
)

T = TypeVar("T")
# After Ctrl-C, how long the wrapper waits for the interrupted cell to end (the grace period and a
# restart fit in it; past it the KeyboardInterrupt is raised anyway).
_INTERRUPT_WAIT_S = 30.0


class BlockingSession:
    """A `Session` usable from sync code."""

    def __init__(self, session: Session, portal: BlockingPortal) -> None:
        self._target = session
        self._portal = portal

    @property
    def target(self) -> Session:
        return self._target

    @property
    def id(self) -> str:
        return self._target.id

    @property
    def state(self) -> SessionState:
        return self._target.state

    @property
    def busy(self) -> bool:
        return self._target.busy

    @property
    def execution_count(self) -> int:
        """Executions run so far (the next one's `execution_count` is this plus one)."""
        return self._target.executions

    def info(self) -> SessionInfo:
        return self._target.info()

    def execute(
        self,
        code: str,
        *,
        timeout_s: float | None = None,
        wait: bool = False,
        **callbacks: Unpack[OutputCallbackArgs],
    ) -> Execution:
        """Run one cell (see `Session.execute`); callbacks run in the event loop's thread."""
        run = functools.partial(
            self._target.execute_with,
            code,
            OutputCallbacks(**callbacks),
            timeout_s=timeout_s,
            wait=wait,
        )
        future = self._portal.start_task_soon(run)
        try:
            return future.result()
        except KeyboardInterrupt:
            # Without this the cell would keep running in the loop's thread and the session
            # would stay busy: interrupt it, wait until it has ended, then let Ctrl-C go on.
            self._portal.call(self._target.interrupt)
            with contextlib.suppress(Exception, FutureTimeout):
                future.result(timeout=_INTERRUPT_WAIT_S)
            raise

    def interrupt(self) -> bool:
        return self._portal.call(self._target.interrupt)

    def restart(self) -> None:
        self._portal.call(self._target.restart)

    def write_file(self, path: str, data: bytes) -> None:
        self._portal.call(self._target.write_file, path, data)

    def read_file(self, path: str) -> bytes:
        return self._portal.call(self._target.read_file, path)

    def list_files(self) -> list[FileInfo]:
        return self._portal.call(self._target.list_files)

    def snapshot(self) -> SnapshotInfo:
        """Keep the interpreter's whole state and the working directory (see `Session.snapshot`)."""
        return self._portal.call(self._target.snapshot)

    def list_snapshots(self) -> list[SnapshotInfo]:
        return self._portal.call(self._target.list_snapshots)

    def restore(self, snapshot_id: str) -> SnapshotInfo:
        """Make the session the snapshot's state again; the snapshot is kept."""
        return self._portal.call(self._target.restore, snapshot_id)

    def delete_snapshot(self, snapshot_id: str) -> None:
        self._portal.call(self._target.delete_snapshot, snapshot_id)

    @property
    def tree(self) -> BlockingTree:
        """The workdir's directories: list, stat, make, remove, move (see `Session.tree`)."""
        return BlockingTree(self._target.tree, self._portal)

    @property
    def commands(self) -> BlockingCommands:
        """Shell commands beside the interpreter (see `Session.commands`)."""
        return BlockingCommands(self._target.commands, self._portal)

    def close(self) -> None:
        self._portal.call(self._target.close)


class BlockingTree:
    """A session's workdir as a tree, from sync code (see `WorkdirTree`)."""

    def __init__(self, tree: WorkdirTree, portal: BlockingPortal) -> None:
        self._tree = tree
        self._portal = portal

    def list(self, path: str = "", depth: int = 1) -> list[FileEntry]:
        return self._portal.call(self._tree.list, path, depth)

    def stat(self, path: str) -> FileEntry:
        return self._portal.call(self._tree.stat, path)

    def make_dir(self, path: str, mode: int = 0o700) -> bool:
        """Make it with its parents; False when it was already a directory."""
        return self._portal.call(self._tree.make_dir, path, mode)

    def remove(self, path: str) -> None:
        """Remove a file, a symlink (itself) or a directory with everything in it."""
        self._portal.call(self._tree.remove, path)

    def move(self, source: str, destination: str) -> FileEntry:
        return self._portal.call(self._tree.move, source, destination)


class BlockingCommands:
    """A session's commands from sync code; callbacks run in the event loop's thread."""

    def __init__(self, commands: CommandService, portal: BlockingPortal) -> None:
        self._commands = commands
        self._portal = portal

    def run(self, request: CommandRequest | str, **options: Any) -> CommandResult:
        """Run to the end (`on_stdout`/`on_stderr` callbacks, CommandRequest's fields)."""
        return self._portal.call(functools.partial(self._commands.run, request, **options))

    def start(self, request: CommandRequest | str, **options: Any) -> BlockingCommand:
        command = self._portal.call(functools.partial(self._commands.start, request, **options))
        return BlockingCommand(command, self._portal)

    def list(self) -> list[CommandInfo]:
        return [command.info() for command in self._commands.list()]

    def find(self, pid: int | None = None, tag: str | None = None) -> BlockingCommand:
        return BlockingCommand(self._commands.find(pid=pid, tag=tag), self._portal)


class BlockingCommand:
    """One running (or ended) command."""

    def __init__(self, command: Command, portal: BlockingPortal) -> None:
        self.target = command
        self.pid = command.pid
        self._portal = portal

    def info(self) -> CommandInfo:
        return self.target.info()

    def result(self) -> CommandResult:
        return self.target.result()

    def send_stdin(self, data: bytes | str) -> None:
        raw = data.encode() if isinstance(data, str) else data
        self._portal.call(_sync, self.target.send_stdin, raw)

    def close_stdin(self) -> None:
        self._portal.call(_sync, self.target.close_stdin)

    def signal(self, number: int = signal.SIGTERM) -> None:
        self._portal.call(_sync, self.target.signal, number)

    def kill(self) -> CommandResult:
        self._portal.call(_sync, self.target.signal, signal.SIGKILL)
        return self.wait()

    def wait(self) -> CommandResult:
        return self._portal.call(self.target.wait)


async def _sync(call: Callable[..., None], *args: Any) -> None:
    """Run a plain call on the event loop's thread, where the command's state lives."""
    call(*args)


class BlockingManager:
    """`with blocking(SessionManager()) as manager:` closes every session on exit."""

    def __init__(self, manager: SessionManager) -> None:
        self._target = manager
        self._stack = contextlib.ExitStack()
        self._portal = self._stack.enter_context(start_blocking_portal("asyncio"))

    @property
    def target(self) -> SessionManager:
        return self._target

    def __enter__(self) -> BlockingManager:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def create(self, spec: SessionSpec | None = None) -> BlockingSession:
        return BlockingSession(self._portal.call(self._target.create, spec), self._portal)

    def get(self, session_id: str) -> BlockingSession:
        return BlockingSession(self._target.get(session_id), self._portal)

    def fork(
        self, session_id: str, *, n: int = 1, snapshot_id: str | None = None
    ) -> list[tuple[BlockingSession, ForkResult]]:
        """`n` new sessions with the state and files of a live one (or of one of its snapshots),
        each with what it received (see `SessionManager.fork`)."""
        call = functools.partial(self._target.fork, session_id, n=n, snapshot_id=snapshot_id)
        return [(self.get(fork.session.id), fork) for fork in self._portal.call(call)]

    def list(self) -> list[BlockingSession]:
        return [BlockingSession(session, self._portal) for session in self._target.list()]

    def close_session(self, session_id: str) -> None:
        self._portal.call(self._target.close, session_id)

    def call(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run any other coroutine function of the engine in the loop's thread."""
        return self._portal.call(function, *args)

    def close(self) -> None:
        try:
            self._portal.call(self._target.close_all)
        finally:
            self._stack.close()


def blocking(manager: SessionManager) -> BlockingManager:
    return BlockingManager(manager)
