"""The sandbox's process service: shell commands and terminals beside the interpreter.

Started inside a session's sandbox on the first command (a `docker exec` into the session's
container, or the subprocess launcher joining the sandbox's namespaces, cgroup and uid), so every
command it runs has the interpreter's isolation, limits, network and working directory. It runs
no user code itself and speaks the agent's length-prefixed JSON frames on its own channel:

Host -> service:  start {id, argv, env, cwd, stdin, pty: {cols, rows} | null, max_output}
                  input {id, data}   close_stdin {id}   signal {id, signal}   resize {id, cols, rows}
Service -> host:  hello {pid}
                  started {id, pid}          failed {id, error}
                  output {id, name, data}    (name: stdout, stderr or pty; data is latin-1 text)
                  truncated {id}             (its output passed max_output: the rest is dropped)
                  exited {id, code}          (negative: killed by that signal)

Each command starts in a session (and process group) of its own, so a signal reaches everything
it started, even after the command itself has exited (until its group is empty). Its exit is reported when its own process exits, after what its pipes hold then; a
background child that keeps the pipes open is not waited for (as envd and Jupyter do). When the
host's channel ends, every command's process group is killed and the service exits.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import selectors
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from typing import Any

from .protocol import FrameDecoder, FrameError, encode_frame, write_all

_CHUNK = 1 << 16
_MAX_PENDING_INPUT = 4 << 20  # stdin a command has not read yet, per command
_MAX_GROUPS = 1024
_KILL_ROUNDS = 50


class _Command:
    def __init__(self, cid: str, popen: subprocess.Popen[bytes], max_output: int) -> None:
        self.cid = cid
        self.popen = popen
        self.max_output = max_output
        self.sent = 0
        self.truncated = False
        self.outputs: dict[int, str] = {}  # fd -> stdout / stderr / pty
        self.input_fd: int | None = None  # the stdin pipe, or the pty's master
        self.pending = bytearray()
        self.close_after_input = False


class Service:
    def __init__(self, requests_fd: int, frames_fd: int) -> None:
        self._requests = requests_fd
        self._frames = frames_fd
        self._decoder = FrameDecoder()
        self._selector = selectors.DefaultSelector()
        self._commands: dict[str, _Command] = {}
        self._groups: dict[str, int] = {}  # exited command -> its process group, maybe not empty
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        self._wake = wake_r
        self._watch(wake_r, self._reap)
        self._watch(requests_fd, self._read_requests)

    def _watch(self, fd: int, handler: Callable[[int], None]) -> None:
        self._selector.register(fd, selectors.EVENT_READ, handler)

    def send(self, message: dict[str, Any]) -> None:
        write_all(self._frames, encode_frame(message))

    def serve(self) -> None:
        self.send({"type": "hello", "pid": os.getpid()})
        while True:
            for key, events in self._selector.select():
                if events & selectors.EVENT_WRITE:
                    self._flush_input(key.fd)
                if events & selectors.EVENT_READ:
                    key.data(key.fd)

    # -- requests ------------------------------------------------------------------------------
    def _read_requests(self, fd: int) -> None:
        try:
            data = os.read(fd, _CHUNK)
        except InterruptedError:
            return
        if not data:
            self._shutdown()
        try:
            frames = self._decoder.feed(data)
        except FrameError:
            self._shutdown()
        for frame in frames:
            self._handle(frame)

    def _handle(self, frame: dict[str, Any]) -> None:
        kind, cid = frame["type"], str(frame.get("id", ""))
        if kind == "start":
            self._start(cid, frame)
            return
        command = self._commands.get(cid)
        if command is None:
            # It has exited: nothing left to feed, but what it started may still run.
            number = int(frame.get("signal", signal.SIGKILL))
            if (
                kind == "signal"
                and cid in self._groups
                and not _signal_group(self._groups[cid], number)
            ):
                del self._groups[cid]
            return
        if kind == "input":
            self._queue_input(command, str(frame.get("data", "")).encode("latin-1", "replace"))
        elif kind == "close_stdin":
            command.close_after_input = True
            self._queue_input(command, b"")
        elif kind == "signal":
            self._signal(command, int(frame.get("signal", signal.SIGKILL)))
        elif kind == "resize":
            self._resize(command, int(frame.get("cols", 80)), int(frame.get("rows", 24)))

    def _start(self, cid: str, frame: dict[str, Any]) -> None:
        if cid in self._commands:
            self.send({"type": "failed", "id": cid, "error": "this command id is in use"})
            return
        try:
            command = _spawn(cid, frame)
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            self.send({"type": "failed", "id": cid, "error": _describe(exc, frame)})
            return
        self._commands[cid] = command
        for fd in command.outputs:
            os.set_blocking(fd, False)
            self._watch(fd, self._read_output)
        if command.input_fd is not None:
            os.set_blocking(command.input_fd, False)
        self.send({"type": "started", "id": cid, "pid": command.popen.pid})
        self._reap(-1)  # it may have exited before SIGCHLD's handler was ready for it

    # -- output --------------------------------------------------------------------------------
    def _owner(self, fd: int) -> _Command | None:
        for command in self._commands.values():
            if fd in command.outputs:
                return command
        return None

    def _read_output(self, fd: int) -> None:
        command = self._owner(fd)
        if command is not None:
            self._forward(command, fd)

    def _forward(self, command: _Command, fd: int, rounds: int = 1) -> None:
        for _ in range(rounds):
            try:
                data = os.read(fd, _CHUNK)
            except BlockingIOError:
                return
            except OSError:  # a pty's master reads EIO once its last holder is gone
                data = b""
            if not data:
                self._close_output(command, fd)
                return
            room = command.max_output - command.sent
            if room > 0:
                piece = data[:room]
                command.sent += len(piece)
                self.send(
                    {
                        "type": "output",
                        "id": command.cid,
                        "name": command.outputs[fd],
                        "data": piece.decode("latin-1"),
                    }
                )
            if len(data) > room and not command.truncated:
                command.truncated = True
                self.send({"type": "truncated", "id": command.cid})

    def _close_output(self, command: _Command, fd: int) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(fd)
        if command.outputs.pop(fd, None) is not None:
            if fd == command.input_fd:  # a pty's master is its input too: closed here
                command.input_fd = None
                command.pending.clear()
            os.close(fd)

    # -- input ---------------------------------------------------------------------------------
    def _queue_input(self, command: _Command, data: bytes) -> None:
        if command.input_fd is None:
            return
        if len(command.pending) + len(data) > _MAX_PENDING_INPUT:
            data = data[: max(_MAX_PENDING_INPUT - len(command.pending), 0)]
        was_empty = not command.pending
        command.pending += data
        if was_empty:
            self._flush_input(command.input_fd)

    def _flush_input(self, fd: int) -> None:
        command = next((c for c in self._commands.values() if c.input_fd == fd), None)
        if command is None:
            return
        try:
            while command.pending:
                del command.pending[: os.write(fd, command.pending)]
        except BlockingIOError:
            self._want_write(fd, True)
            return
        except OSError:  # the command closed its stdin
            command.pending.clear()
        self._want_write(fd, False)
        if command.close_after_input and fd not in command.outputs:
            self._drop_input(command)
        elif command.close_after_input:  # a pty: end of input is its EOF character
            with contextlib.suppress(OSError):
                os.write(fd, b"\x04")
            command.close_after_input = False

    def _want_write(self, fd: int, wanted: bool) -> None:
        """Watch `fd` for room to write while input waits; a pty's master is read as well."""
        key = self._selector.get_map().get(fd)
        reader = key.data if key is not None else None
        events = selectors.EVENT_READ if reader is not None else 0
        if wanted:
            events |= selectors.EVENT_WRITE
        if key is None and events:
            self._selector.register(fd, events, reader)
        elif key is not None and events and events != key.events:
            self._selector.modify(fd, events, reader)
        elif key is not None and not events:
            self._selector.unregister(fd)

    def _drop_input(self, command: _Command) -> None:
        fd, command.input_fd = command.input_fd, None
        if fd is None:
            return
        command.pending.clear()
        if fd in command.outputs:  # the pty master stays open for its output
            return
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(fd)
        os.close(fd)

    # -- control -------------------------------------------------------------------------------
    def _signal(self, command: _Command, number: int) -> None:
        if not _signal_group(command.popen.pid, number):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(command.popen.pid, number)

    def _resize(self, command: _Command, cols: int, rows: int) -> None:
        if command.input_fd is not None and command.input_fd in command.outputs:
            _set_size(command.input_fd, cols, rows)

    def _reap(self, fd: int) -> None:
        if fd >= 0:
            with contextlib.suppress(BlockingIOError):
                while os.read(fd, 512):
                    pass
        for command in list(self._commands.values()):
            try:
                pid, status = os.waitpid(command.popen.pid, os.WNOHANG)
            except ChildProcessError:
                pid, status = command.popen.pid, 0
            if pid == 0:
                continue
            command.popen.returncode = os.waitstatus_to_exitcode(status)
            for out in list(command.outputs):  # what the pipes hold now, then no more
                self._forward(command, out, rounds=64)
                self._close_output(command, out)
            self._drop_input(command)
            del self._commands[command.cid]
            self._remember_group(command)
            self.send({"type": "exited", "id": command.cid, "code": command.popen.returncode})

    def _remember_group(self, command: _Command) -> None:
        """What an exited command started lives on in its process group: kept, so the host can
        still end it at the command's deadline (a fork bomb's parent exits at once)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(command.popen.pid, 0)
            self._groups[command.cid] = command.popen.pid
            while len(self._groups) > _MAX_GROUPS:
                del self._groups[next(iter(self._groups))]

    def _shutdown(self) -> None:
        for command in self._commands.values():
            self._signal(command, signal.SIGKILL)
        os._exit(0)


def _spawn(cid: str, frame: dict[str, Any]) -> _Command:
    argv = [str(part) for part in frame["argv"]]
    env = {**os.environ, **{str(k): str(v) for k, v in dict(frame.get("env") or {}).items()}}
    cwd = frame.get("cwd") or None
    max_output = int(frame.get("max_output", 16 << 20))
    size = frame.get("pty")
    if size:
        master, follower = os.openpty()
        try:
            _set_size(follower, int(size.get("cols", 80)), int(size.get("rows", 24)))
            env.setdefault("TERM", "xterm-256color")
            popen = subprocess.Popen(
                argv, stdin=follower, stdout=follower, stderr=follower, env=env, cwd=cwd,
                start_new_session=True, preexec_fn=_take_terminal,  # noqa: PLW1509 - one thread
            )  # fmt: skip
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(follower)
        command = _Command(cid, popen, max_output)
        command.outputs[master] = "pty"
        command.input_fd = master
        return command
    # Pipes made here, not by Popen: its file objects would close the descriptors when collected.
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    in_r, in_w = os.pipe2(os.O_CLOEXEC) if frame.get("stdin") else (subprocess.DEVNULL, -1)
    try:
        popen = subprocess.Popen(
            argv, stdin=in_r, stdout=out_w, stderr=err_w, env=env, cwd=cwd,
            start_new_session=True,
        )  # fmt: skip
    except BaseException:
        for fd in (out_r, err_r, in_w):
            if fd >= 0:
                os.close(fd)
        raise
    finally:
        for fd in (out_w, err_w, in_r):
            if fd >= 0:
                os.close(fd)
    command = _Command(cid, popen, max_output)
    command.outputs = {out_r: "stdout", err_r: "stderr"}
    command.input_fd = in_w if in_w >= 0 else None
    return command


def _signal_group(pgid: int, number: int) -> bool:
    """Signal a process group; whether it had members. SIGKILL is repeated until none is left
    (bounded): a process forked while its group was being killed is not in that kill's pass."""
    for _ in range(_KILL_ROUNDS if number == signal.SIGKILL else 1):
        try:
            os.killpg(pgid, number)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        if number == signal.SIGKILL:
            time.sleep(0.002)
    return True


def _take_terminal() -> None:
    """In the child, after setsid: make the pty its controlling terminal (job control, ^C)."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _set_size(fd: int, cols: int, rows: int) -> None:
    cols, rows = max(1, min(cols, 1000)), max(1, min(rows, 1000))
    with contextlib.suppress(OSError):
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _describe(exc: BaseException, frame: dict[str, Any]) -> str:
    if isinstance(exc, FileNotFoundError) and frame.get("cwd") and exc.filename == frame["cwd"]:
        return f"the working directory {frame.get('cwd')!r} does not exist"
    if isinstance(exc, FileNotFoundError):
        return f"no such program: {exc.filename}"
    return f"{type(exc).__name__}: {exc}"


def main() -> None:
    """`--requests-fd=N --frames-fd=M` (the subprocess backend's pipes), else stdin and stdout."""
    fds = {"--requests-fd": 0, "--frames-fd": 1}
    for arg in sys.argv[1:]:
        name, _, value = arg.partition("=")
        if name in fds:
            fds[name] = int(value)
    Service(fds["--requests-fd"], fds["--frames-fd"]).serve()
