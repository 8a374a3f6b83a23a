"""Snapshots of the live kernel: copy-on-write forks kept frozen inside the same sandbox.

    snapshot  the kernel copies the working directory into `.lci-snapshots/<id>/files` and forks.
              The child, the snapshot, holds every object as it was (open files, generators,
              lambdas; threads aside) and waits on a control socket; pages are shared until the
              kernel changes them.
    restore   the kernel puts the snapshot's files back, then hands over: the snapshot forks a
              copy that stays frozen in its place (so it can be restored again) and becomes the
              kernel itself (it restarts the output pump and answers the request); the old kernel
              writes the new one's pid to the relay and exits with `HANDOVER_EXIT`. The relay, a
              child subreaper, adopts the new kernel in that exit and follows it instead of
              reporting an exit.
    drop      the snapshot exits; its files are removed.
    export    (for a fork into a new sandbox) a throwaway fork of the snapshot, or the kernel
              itself, writes what of its namespace can be pickled (`transfer`).

Each snapshot has a SOCK_SEQPACKET socketpair: the kernel holds one end, the snapshot the other.
The kernel's ends travel with a handover (SCM_RIGHTS), so a restored kernel can reach every
snapshot, including ones taken after the one it came from.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import re
import shutil
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

from . import transfer
from .tree import SNAPSHOT_DIR

REQUESTS = frozenset({"snapshot", "restore", "drop", "snapshots", "export", "import"})
HANDOVER_EXIT = 86  # the kernel exits with this after handing over (see relay._serve)
_MAX_MESSAGE = 1 << 16
_WAIT_S = 15.0


class SnapshotError(Exception):
    """A snapshot request that cannot be done; its message goes back to the host."""


class Snapshot:
    def __init__(self, sid: str, ctl: socket.socket, meta: dict[str, Any]) -> None:
        self.id = sid
        self.ctl = ctl
        self.meta = meta  # pid, created_at, executions, files, disk_bytes


class Keeper:
    """The kernel's snapshots. `resume` is what a restored kernel runs before serving again."""

    def __init__(
        self, workdir: str, handover_fd: int, prepare: Callable[[], Any], resume: Callable[[], None]
    ) -> None:
        self.workdir = workdir
        self.handover_fd = handover_fd
        self._prepare = prepare  # flush output and lock the channel; returns the lock to release
        self._resume = resume
        self.snapshots: dict[str, Snapshot] = {}
        self.namespace: dict[str, Any] = {}  # the kernel's (set by it)
        self.baseline: frozenset[str] = frozenset()  # its names before any cell ran
        self.resumed = False  # set in a kernel a restore made, until the kernel has seen it
        self.forking = False  # a fork of ours is under way: not user code's (see kernel hooks)
        self._sid = ""  # in a snapshot: its own id
        self._restore_id: str | None = None  # in a restored kernel: the request it answers

    @property
    def root(self) -> str:
        return os.path.join(self.workdir, SNAPSHOT_DIR)

    def fds(self) -> list[int]:
        """Descriptors a child forked by user code must not keep."""
        return [s.ctl.fileno() for s in self.snapshots.values()]

    # -- requests --------------------------------------------------------------------------------
    def handle(self, request: dict[str, Any], executions: int) -> dict[str, Any]:
        """Answer one request; a `restore` returns in the new kernel (the old one exits)."""
        kind = request["type"]
        try:
            if self.handover_fd < 0:
                raise SnapshotError("this sandbox runs without the relay: it keeps no snapshots")
            if kind == "snapshot":
                data = self.take(str(request["snapshot"]), executions)
                if "_resumed" in data:  # this is the kernel a restore made: answer that
                    return {"type": "reply", "id": data.pop("_resumed"), "ok": True, **data}
            elif kind == "restore":
                data = self.restore(str(request["snapshot"]), str(request["id"]))
            elif kind == "drop":
                data = self.drop(str(request["snapshot"]))
            elif kind == "export":
                path = self._path(str(request["path"]))
                snapshot = request.get("snapshot")
                data = self.export(str(snapshot) if snapshot else None, path)
            elif kind == "import":
                path = self._path(str(request["path"]))
                data = transfer.read_bundle(path, self.workdir, self.namespace)
            elif kind == "snapshots":
                data = {"snapshots": [self._measured(s) for s in self.snapshots.values()]}
            else:
                raise SnapshotError(f"unknown request {kind!r}")
        except Exception as exc:  # a failed request must leave the kernel serving
            reason = str(exc) if isinstance(exc, SnapshotError) else f"{type(exc).__name__}: {exc}"
            return {"type": "reply", "id": request.get("id"), "ok": False, "error": reason}
        finally:
            if not self.snapshots:  # the folder is there only while it holds something
                with contextlib.suppress(OSError):
                    os.rmdir(self.root)
        return {"type": "reply", "id": request.get("id"), "ok": True, **data}

    def take(self, sid: str, executions: int) -> dict[str, Any]:
        if not self.snapshots:
            shutil.rmtree(self.root, ignore_errors=True)  # left by an interpreter before this one
        if sid in self.snapshots or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", sid):
            raise SnapshotError(f"bad snapshot id {sid!r}")
        files, size = _copy_workdir(self.workdir, os.path.join(self.root, sid))
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        lock = self._prepare()
        self.forking = True
        try:
            if os.fork() == 0:  # the snapshot
                ours.close()
                self._sid = sid
                self._freeze(theirs)  # returns only where a restore makes this the kernel
                return self._resumed()
        finally:
            self.forking = False
            lock.release()
        theirs.close()
        try:
            hello = _receive(ours, _WAIT_S)[0]
        except SnapshotError:
            ours.close()
            shutil.rmtree(os.path.join(self.root, sid), ignore_errors=True)
            raise
        meta = {
            "pid": hello["pid"],
            "created_at": time.time(),
            "executions": executions,
            "files": files,
            "disk_bytes": size,
        }
        self.snapshots[sid] = Snapshot(sid, ours, meta)
        return {"snapshot": self._measured(self.snapshots[sid])}

    def drop(self, sid: str) -> dict[str, Any]:
        snapshot = self._get(sid)
        with contextlib.suppress(OSError):
            snapshot.ctl.send(b'{"op":"drop"}')
        snapshot.ctl.close()
        with contextlib.suppress(ChildProcessError):  # the relay reaps it if it is not ours
            os.waitpid(int(snapshot.meta["pid"]), 0)
        del self.snapshots[sid]
        shutil.rmtree(os.path.join(self.root, sid), ignore_errors=True)
        return {}

    def restore(self, sid: str, request_id: str) -> dict[str, Any]:
        snapshot = self._get(sid)
        saved = os.path.join(self.root, sid, "files")
        if not os.path.isdir(saved):
            raise SnapshotError(f"the copy of the working directory of {sid} is gone")
        _replace_workdir(self.workdir, saved)
        table = [(s.id, s.meta) for s in self.snapshots.values()]
        message = json.dumps({"op": "restore", "id": request_id, "table": table}).encode()
        lock = self._prepare()  # held until this process exits: it writes no frame again
        try:
            fds = [s.ctl.fileno() for s in self.snapshots.values()]
            socket.send_fds(snapshot.ctl, [message], fds)
            pid = int(_receive(snapshot.ctl, _WAIT_S)[0]["pid"])
        except (SnapshotError, OSError, KeyError, ValueError) as exc:
            lock.release()
            raise SnapshotError(f"the snapshot did not take over: {exc}") from exc
        os.write(self.handover_fd, struct.pack("=q", pid))
        os._exit(HANDOVER_EXIT)

    def export(self, sid: str | None, path: str) -> dict[str, Any]:
        """Write the state a fork starts from to `path` (see `transfer.write_bundle`), from the
        live kernel or from snapshot `sid`."""
        if sid is None:
            return transfer.write_bundle(
                path, self.workdir, self.namespace, self.baseline, skip=SNAPSHOT_DIR
            )
        snapshot = self._get(sid)
        request = {"op": "export", "path": path}
        snapshot.ctl.send(json.dumps(request).encode())
        answer = _receive(snapshot.ctl, 600.0)[0]
        if not answer.get("ok"):
            raise SnapshotError(str(answer.get("error")))
        return dict(answer["report"])

    # -- inside the snapshot -----------------------------------------------------------------------

    def _freeze(self, ctl: socket.socket) -> None:
        """The snapshot's life: say it is there, then serve the live kernel's requests until it
        is dropped; returns in the process that a restore makes the kernel."""
        ctl.send(json.dumps({"pid": os.getpid()}).encode())
        while True:
            try:
                message, fds, _, _ = socket.recv_fds(ctl, _MAX_MESSAGE, 256)
            except OSError:
                os._exit(0)
            if not message:
                os._exit(0)  # every live kernel is gone
            request = json.loads(message)
            if request.get("op") == "restore":
                if self._fork_kernel(ctl, request, fds):
                    return
                continue
            for fd in fds:
                os.close(fd)
            if request.get("op") == "export":
                _answer_in_child(ctl, functools.partial(self._export_here, request))
            elif request.get("op") == "measure":  # only it may read its own memory map
                ctl.send(json.dumps({"memory_bytes": _private_bytes("self")}).encode())
            else:
                os._exit(0)

    def _export_here(self, request: dict[str, Any]) -> dict[str, Any]:
        files = os.path.join(self.root, self._sid, "files")
        return transfer.write_bundle(request["path"], files, self.namespace, self.baseline)

    def _fork_kernel(self, ctl: socket.socket, request: dict[str, Any], fds: list[int]) -> bool:
        """Fork a copy that stays the snapshot (False in it), and become the kernel (True): the
        old kernel exits once it has the pid, and the relay, as subreaper, adopts this process
        in that exit, before it learns of it."""
        child = os.fork()
        if child == 0:
            for fd in fds:
                os.close(fd)
            return False
        self._adopt(request, fds)
        self.snapshots[self._sid].meta["pid"] = child
        ctl.send(json.dumps({"pid": os.getpid()}).encode())
        ctl.close()  # the copy holds the snapshot's end now
        return True

    def _adopt(self, request: dict[str, Any], fds: list[int]) -> None:
        """In the new kernel: the old kernel's snapshot table, with its control ends."""
        self.snapshots = {}
        for (sid, meta), fd in zip(request["table"], fds, strict=False):
            self.snapshots[sid] = Snapshot(sid, socket.socket(fileno=fd), meta)
        self._restore_id = str(request["id"])

    def _resumed(self) -> dict[str, Any]:
        """In the new kernel, back from `_freeze`: restart what a fork loses, answer the restore."""
        self.forking = False
        self._resume()
        self.resumed = True
        sid = self._sid
        snapshot = self.snapshots.get(sid)
        data = {"snapshot": self._measured(snapshot, measure=False)} if snapshot else {}
        return {"_resumed": self._restore_id, **data}

    def _path(self, name: str) -> str:
        """A bundle's place: a plain file name inside the snapshots' folder."""
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,100}", name) or name.startswith("."):
            raise SnapshotError(f"bad bundle name {name!r}")
        os.makedirs(self.root, exist_ok=True)
        return os.path.join(self.root, name)

    def _get(self, sid: str) -> Snapshot:
        snapshot = self.snapshots.get(sid)
        if snapshot is None:
            raise SnapshotError(f"no snapshot {sid!r} in this interpreter")
        return snapshot

    def _measured(self, snapshot: Snapshot, measure: bool = True) -> dict[str, Any]:
        """Its figures; with `measure`, the memory only it holds, as it reads it itself (a
        process that changed uid may not be readable by its siblings)."""
        memory = None
        if measure:
            with contextlib.suppress(OSError, SnapshotError, ValueError):
                snapshot.ctl.send(b'{"op":"measure"}')
                memory = _receive(snapshot.ctl, _WAIT_S)[0].get("memory_bytes")
        return {"id": snapshot.id, **snapshot.meta, "memory_bytes": memory}


def _answer_in_child(ctl: socket.socket, work: Callable[[], dict[str, Any]]) -> None:
    """Do `work` in a throwaway fork, so the snapshot's own pages stay untouched; send its
    report (or its error) on `ctl`."""
    child = os.fork()
    if child == 0:
        try:
            answer: dict[str, Any] = {"ok": True, "report": work()}
        except BaseException as exc:  # every failure is the host's to see
            answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        with contextlib.suppress(OSError):
            ctl.send(json.dumps(answer).encode())
        os._exit(0)
    os.waitpid(child, 0)


def _receive(ctl: socket.socket, timeout: float) -> tuple[dict[str, Any], list[int]]:
    ctl.settimeout(timeout)
    try:
        message, fds, _, _ = socket.recv_fds(ctl, _MAX_MESSAGE, 16)
    except (TimeoutError, OSError) as exc:
        raise SnapshotError(f"the snapshot did not answer: {exc}") from exc
    finally:
        ctl.settimeout(None)
    if not message:
        raise SnapshotError("the snapshot is gone")
    return json.loads(message), fds


def _private_bytes(pid: int | str) -> int | None:
    """Memory only that process holds (its pages no other process shares), or None."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            fields = dict(line.split(":", 1) for line in rollup if ":" in line)
    except OSError:
        return None
    try:
        kib = sum(int(fields[k].split()[0]) for k in ("Private_Clean", "Private_Dirty"))
    except (KeyError, ValueError, IndexError):
        return None
    return kib * 1024


def _copy_workdir(workdir: str, target: str) -> tuple[int, int]:
    """Copy the working directory (its snapshots left out) to `target/files`; (files, bytes).
    A copy that does not fit (the workdir's own size limit) is removed and refused."""
    files_dir = os.path.join(target, "files")
    counted = [0, 0]

    def copy(src: str, dst: str) -> None:
        shutil.copy2(src, dst, follow_symlinks=False)
        counted[0] += 1
        counted[1] += os.lstat(dst).st_size

    try:
        os.makedirs(target, exist_ok=False)
        shutil.copytree(
            workdir,
            files_dir,
            symlinks=True,
            ignore=lambda d, names: [SNAPSHOT_DIR] if d == workdir else [],
            copy_function=copy,
        )
    except (OSError, shutil.Error) as exc:
        shutil.rmtree(target, ignore_errors=True)
        raise SnapshotError(f"cannot copy the working directory: {_why(exc)}") from None
    return counted[0], counted[1]


def _replace_workdir(workdir: str, saved: str) -> None:
    """Make the working directory what `saved` holds (the snapshots' own folder stays)."""
    for name in os.listdir(workdir):
        if name == SNAPSHOT_DIR:
            continue
        path = os.path.join(workdir, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(path)
    try:
        shutil.copytree(saved, workdir, symlinks=True, dirs_exist_ok=True)
    except (OSError, shutil.Error) as exc:
        raise SnapshotError(f"cannot restore the working directory: {_why(exc)}") from None


def _why(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, shutil.Error) and exc.args and isinstance(exc.args[0], list):
        text = str(exc.args[0][0][2]) if exc.args[0] else text
    if (isinstance(exc, OSError) and exc.errno == errno.ENOSPC) or "[Errno 28]" in text:
        return "no space left in the working directory for its copy (the session's disk_mb)"
    return text
