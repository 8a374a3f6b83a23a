"""`lci exec`: run cells in one session and print what happened, live.

The session is a fresh local one, or one held by a running `lci serve` (`--server`, and `--session`
to attach to a live one). Files go into its working directory before the cells (`--put`) and come
out after them (`--get`). Shell commands (`--shell`) run in the same sandbox before the cells.
With `--snapshot-each-cell`, a cell that fails is undone: the session is restored to the snapshot
taken before it (docs/exec.md).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Protocol

from engine.callbacks import ItemCallback
from engine.cli.common import (
    LIMIT_FLAGS,
    UsageError,
    gets_of,
    limits_with,
    load_settings,
    puts_of,
    writable_dir,
)
from engine.cli.exec_output import CellPrinter
from engine.errors import LCIError
from engine.models import BackendName, Execution, Outcome, SessionSpec, SnapshotInfo


class _Session(Protocol):
    """What `lci exec` needs of a session: a local `Session` and a `RemoteSession` both fit."""

    async def execute(self, code: str, *, on_output: ItemCallback | None = None) -> Execution: ...
    async def write_file(self, path: str, data: bytes) -> Any: ...
    async def read_file(self, path: str) -> bytes: ...
    async def snapshot(self) -> SnapshotInfo: ...
    async def restore(self, snapshot_id: str) -> SnapshotInfo: ...
    async def delete_snapshot(self, snapshot_id: str) -> None: ...
    @property
    def commands(self) -> Any: ...


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "exec",
        help="run Python cells in one sandboxed session",
        description="Each CODE argument is one cell ('-' reads a cell from stdin); all run in "
        "order in one session, so later cells see what earlier ones defined. Output is shown as "
        "it happens.",
    )
    parser.add_argument("code", nargs="*", metavar="CODE")
    parser.add_argument(
        "--shell",
        action="append",
        default=[],
        metavar="CMD",
        help="run a bash command in the session's sandbox before the cells (repeatable)",
    )
    parser.add_argument("--backend", choices=[b.value for b in BackendName], default=None)
    limits = parser.add_argument_group("limits (default: LCI_LIMITS, else the built-in ones)")
    limits.add_argument("--timeout", type=float, help="wall-clock seconds per cell (30)")
    limits.add_argument("--cpu-s", type=float, help="CPU seconds per cell (the timeout)")
    limits.add_argument("--memory-mb", type=int, help="memory of the whole sandbox (512)")
    limits.add_argument("--max-procs", type=int, help="processes and threads at once (64)")
    limits.add_argument("--disk-mb", type=int, help="size of the working directory (256)")
    limits.add_argument("--open-files", type=int, help="open files per process (256)")
    limits.add_argument("--output-bytes", type=int, help="output kept per cell (1 MiB)")
    limits.add_argument("--cpus", type=float, help="CPU cores' worth of time (unlimited)")
    limits.add_argument("--network", action="store_true", help="allow network access")
    files = parser.add_argument_group("files")
    files.add_argument(
        "--put",
        action="append",
        default=[],
        metavar="LOCAL[:PATH]",
        help="copy a local file into the working directory before the cells (repeatable)",
    )
    files.add_argument(
        "--get",
        action="append",
        default=[],
        metavar="PATH[:LOCAL]",
        help="copy a file of the working directory out after the cells (default: into "
        "--out-dir; repeatable)",
    )
    # The server's key comes from LCI_API_KEY only: a key on the command line is readable by every
    # local user (lci serve refuses one for the same reason).
    remote = parser.add_argument_group("a session held by `lci serve` (key: LCI_API_KEY)")
    remote.add_argument(
        "--server",
        default=os.environ.get("LCI_SERVER_URL"),
        metavar="URL",
        help="run in a session of this server, e.g. http://127.0.0.1:8000 (LCI_SERVER_URL)",
    )
    remote.add_argument("--session", metavar="ID", help="attach to this live session of --server")
    parser.add_argument(
        "--snapshot-each-cell",
        action="store_true",
        help="snapshot the session before the cells and after each cell that succeeds; when a "
        "cell fails, restore the last snapshot, so the next cell starts as if it had not run",
    )
    parser.add_argument("--json", action="store_true", help="print one Execution JSON per line")
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=None,
        help="where images and --get files are saved (default: current directory)",
    )


def _limit_changes(args: argparse.Namespace) -> dict[str, object]:
    changes: dict[str, object] = {}
    for field, flag in LIMIT_FLAGS.items():
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is not None and value is not False:
            changes[field] = value
    return changes


async def run(args: argparse.Namespace) -> int:
    if args.session and not args.server:
        raise UsageError("--session needs --server (the lci serve that holds the session)")
    changes = _limit_changes(args)
    if args.session and changes:
        flags = ", ".join(LIMIT_FLAGS[field] for field in changes)
        raise UsageError(f"{flags}: an existing session keeps its limits (leave out --session)")
    # A directory the user named is checked now; the current one only matters if something is saved.
    out_dir = writable_dir(args.out_dir, "--out-dir") if args.out_dir else Path.cwd()
    puts, gets = puts_of(args.put), gets_of(args.get, out_dir)
    if not args.code and not args.shell:
        raise UsageError("give CODE to run, or --shell CMD")
    cells = [sys.stdin.read() if code == "-" else code for code in args.code]
    opener = _remote(args, changes) if args.server else _local(args, changes)
    try:
        async with opener as session:
            for local, target in puts:
                await session.write_file(target, local.read_bytes())
            failed = await _run_commands(session, args.shell, args.json)
            undo = _Undo(session) if args.snapshot_each_cell and cells else None
            failed |= await _run_cells(session, cells, args.json, out_dir, undo)
            for remote, local_path in gets:
                local_path.parent.mkdir(parents=True, exist_ok=True)
                local_path.write_bytes(await session.read_file(remote))
                print(f"[{remote} saved to {local_path}]", file=sys.stderr, flush=True)
    except LCIError as exc:
        print(f"lci exec: {exc.message}", file=sys.stderr)
        return 2
    return 1 if failed else 0


async def _run_commands(session: _Session, commands: list[str], as_json: bool) -> bool:
    """Each command with its output live (stdout to stdout, stderr to stderr); whether any failed."""
    failed = False
    for command in commands:
        live = (
            {} if as_json else {"on_stdout": _writer(sys.stdout), "on_stderr": _writer(sys.stderr)}
        )
        result = await session.commands.run(command, **live)
        failed |= result.exit_code != 0
        if as_json:
            print(result.model_dump_json(), flush=True)
        elif result.exit_code != 0:
            why = result.error or f"exit status {result.exit_code}"
            print(f"[{command!r}: {why}]", file=sys.stderr, flush=True)
    return failed


def _writer(stream: Any) -> Any:
    def write(text: str) -> None:
        stream.write(text)
        stream.flush()

    return write


async def _run_cells(
    session: _Session, cells: list[str], as_json: bool, out_dir: Path, undo: _Undo | None
) -> bool:
    printer = CellPrinter(out_dir)
    failed = False
    if undo is not None:
        await undo.keep()
    for number, code in enumerate(cells, 1):
        printer.start()
        execution = await session.execute(code, on_output=None if as_json else printer.item)
        ok = execution.outcome is Outcome.COMPLETED
        failed |= not ok
        if as_json:
            print(execution.model_dump_json(), flush=True)
        else:
            printer.finish(execution)
        if undo is not None:
            await (undo.keep() if ok else undo.back(number))
    if undo is not None:
        await undo.drop()
    return failed


class _Undo:
    """The session's last good state: one snapshot, replaced after each cell that succeeds,
    restored after one that fails (so a session holds one snapshot at a time)."""

    def __init__(self, session: _Session) -> None:
        self.session = session
        self.last: SnapshotInfo | None = None

    async def keep(self) -> None:
        taken = await self.session.snapshot()
        await self.drop()
        self.last = taken

    async def back(self, cell: int) -> None:
        assert self.last is not None  # `keep` ran before the first cell
        await self.session.restore(self.last.id)
        print(
            f"[cell {cell} failed: the session is restored to its state before it "
            f"(snapshot {self.last.id})]",
            file=sys.stderr,
            flush=True,
        )

    async def drop(self) -> None:
        if self.last is not None:
            await self.session.delete_snapshot(self.last.id)
            self.last = None


@asynccontextmanager
async def _local(args: argparse.Namespace, changes: dict[str, object]) -> AsyncIterator[_Session]:
    from engine.core.manager import SessionManager

    # One session, used once: pre-started sandboxes and a fork server would only cost start-up.
    settings = load_settings(forkserver=False, subprocess_warm_pool=0, docker_warm_pool=0)
    spec = SessionSpec(
        backend=BackendName(args.backend or settings.backend),
        limits=limits_with(settings.limits, changes),
    )
    async with SessionManager(settings) as manager:
        yield await manager.create(spec)


@asynccontextmanager
async def _remote(args: argparse.Namespace, changes: dict[str, object]) -> AsyncIterator[_Session]:
    from engine.client import AsyncClient
    from engine.errors import ServerUnavailable

    if changes:
        limits_with(load_settings().limits, changes)  # the server checks too; name the flag here
    try:
        async with AsyncClient(args.server) as client:
            if args.session:
                yield await client.session(args.session)
                return
            session = await client.create_session(limits=changes, backend=args.backend)
            try:
                yield session
            finally:
                await session.close()
    except ServerUnavailable as exc:
        reason = exc.__cause__ or exc
        raise UsageError(f"--server {args.server}: {reason or type(reason).__name__}") from None
