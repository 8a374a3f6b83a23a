"""The fork server ("zygote"): imports the agent and a set of heavy modules once, then forks ready
sandboxes on request. A standalone script (standard library only, plus whatever it preloads), run by
the subprocess backend as `python -I -B -u zygote.py CONTROL_FD AGENT_ROOT LAUNCHER PRELOAD_JSON`.

Each child runs exactly the launcher's steps (cgroups, namespaces, private root, uid, rlimits,
no_new_privs) before any user code, then runs the agent in place instead of exec'ing a fresh
interpreter: the imports are already done, and their pages stay shared with the zygote.

Control protocol (length-prefixed JSON frames, as the agent's):
    host -> zygote   spawn {id}, with five fds attached: the config pipe (read end; the config is
                     read by the child only, so no session's settings linger in the zygote's memory),
                     the request pipe, the frame pipe, stdout and stderr.
    zygote -> host   hello {preloaded, failed, threads}   spawned {id, pid}   exited {pid, code}
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import importlib.util
import json
import os
import selectors
import signal
import socket
import sys
import threading
from typing import Any

# Thread pools inherited through fork() are broken in the child; keep the numeric libraries
# single-threaded so the zygote has exactly one thread when it forks.
_SINGLE_THREAD_ENV = (
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)


def _load_launcher(path: str) -> Any:
    spec = importlib.util.spec_from_file_location("lci_launcher", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _preload(names: list[str]) -> tuple[list[str], dict[str, str]]:
    loaded, failed = [], {}
    for name in names:
        try:
            importlib.import_module(name)
            loaded.append(name)
        except Exception as exc:  # a missing optional package is reported, not fatal
            failed[name] = f"{type(exc).__name__}: {exc}"
    return loaded, failed


def _prepare(agent_root: str, preload: list[str]) -> dict[str, Any]:
    for name in _SINGLE_THREAD_ENV:
        os.environ[name] = "1"
    os.environ["MPLBACKEND"] = "Agg"
    sys.path.insert(0, agent_root)
    loaded, failed = _preload(preload)
    # Everything a sandbox will run must be imported here: after the fork it lives in a private
    # filesystem where the zygote's paths may not exist.
    agent_modules = [
        "lci_agent.protocol",
        "lci_agent.display",
        "lci_agent.channel",
        "lci_agent.figures",
        "lci_agent.interactive",
        "lci_agent.cells",
        "lci_agent.report",
        "lci_agent.streams",
        "lci_agent.relay",
        "lci_agent.kernel",
        "lci_agent.entry",
    ]
    if "matplotlib" in sys.modules:
        agent_modules.append("lci_agent.mpl_backend")
    for name in agent_modules:
        importlib.import_module(name)
    if "IPython" in sys.modules:  # every sandbox adopts the shell made here once
        sys.modules["lci_agent.interactive"].prepare()
    if "matplotlib" in sys.modules:
        # The agent selects its own backend in every sandbox; selecting it here once makes that a
        # no-op in the children instead of a pyplot backend switch per session.
        with contextlib.suppress(Exception):
            sys.modules["matplotlib"].use("module://lci_agent.mpl_backend")
            # Found (and registered) once here, the CJK font is known to every sandbox at once.
            font_manager = importlib.import_module("matplotlib.font_manager")
            sys.modules["lci_agent.figures"].cjk_font(font_manager)
    # Objects that exist now are never collected in the children; freezing them keeps the GC from
    # writing to their pages, which would unshare them from the zygote copy-on-write.
    gc.collect()
    gc.freeze()
    threads = len(os.listdir("/proc/self/task"))
    return {
        "type": "hello",
        "preloaded": loaded,
        "failed": failed,
        "threads": threads,
        "python_threads": threading.active_count(),
    }


class Zygote:
    def __init__(self, control: socket.socket, launcher: Any) -> None:
        from lci_agent.protocol import FrameDecoder, encode_frame  # type: ignore[import-not-found]

        self.control = control
        self.launcher = launcher
        self.decoder = FrameDecoder()
        self.encode = encode_frame
        self.wakeup_r, wakeup_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wakeup_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        self.selector = selectors.DefaultSelector()
        self.selector.register(control, selectors.EVENT_READ, "control")
        self.selector.register(self.wakeup_r, selectors.EVENT_READ, "children")

    def send(self, message: dict[str, Any]) -> None:
        self.control.sendall(self.encode(message))

    def serve(self) -> None:
        while True:
            for key, _ in self.selector.select():
                if key.data == "control":
                    self._receive()
                else:
                    self._reap()

    def _receive(self) -> None:
        # The host sends one spawn at a time and waits for its answer, so the fds that arrive
        # belong to the frame that arrives with them.
        data, fds, _, _ = socket.recv_fds(self.control, 65536, 16)
        if not data:
            os._exit(0)  # the host closed the control socket: it is gone or done with us
        for frame in self.decoder.feed(data):
            if frame.get("type") == "spawn" and len(fds) >= 5:
                self._spawn(frame["id"], fds[:5])
                fds = fds[5:]
        for fd in fds:
            os.close(fd)

    def _spawn(self, spawn_id: int, fds: list[int]) -> None:
        config_fd, requests_fd, frames_fd, stdout_fd, stderr_fd = fds
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            self._child(parent, config_fd, requests_fd, frames_fd, stdout_fd, stderr_fd)
        for fd in fds:
            os.close(fd)
        self.send({"type": "spawned", "id": spawn_id, "pid": pid})

    def _child(
        self,
        parent: int,
        config_fd: int,
        requests_fd: int,
        frames_fd: int,
        stdout_fd: int,
        stderr_fd: int,
    ) -> None:
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            os.setsid()  # its own process group, as a directly started sandbox has
            self.selector.close()
            self.control.close()
            os.dup2(stdout_fd, 1)
            os.dup2(stderr_fd, 2)
            with os.fdopen(config_fd, "rb") as handle:
                cfg = json.loads(handle.read())
            _close_all_but({0, 1, 2, requests_fd, frames_fd})
            cfg["in_process"] = True
            cfg["requests_fd"], cfg["frames_fd"] = requests_fd, frames_fd
            cfg["agent_args"] = [f"--requests-fd={requests_fd}", f"--frames-fd={frames_fd}"]
        except BaseException as exc:
            os.write(2, f"fork server child failed: {exc!r}\n".encode())
            os._exit(self.launcher.SETUP_FAILED)
        self.launcher.run_reporting_errors(cfg, parent)
        os._exit(self.launcher.SETUP_FAILED)

    def _reap(self) -> None:
        while True:
            try:
                os.read(self.wakeup_r, 4096)
            except BlockingIOError:
                break
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.send({"type": "exited", "pid": pid, "code": os.waitstatus_to_exitcode(status)})


def _close_all_but(keep: set[int]) -> None:
    """A sandbox inherits none of the zygote's descriptors but its own pipes."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)


def main() -> None:
    control_fd, agent_root, launcher_path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    preload = json.loads(sys.argv[4])
    launcher = _load_launcher(launcher_path)
    launcher._prctl(launcher.PR_SET_PDEATHSIG, signal.SIGKILL, "PR_SET_PDEATHSIG")
    control = socket.socket(fileno=control_fd)
    hello = _prepare(agent_root, preload)
    zygote = Zygote(control, launcher)
    zygote.send(hello)
    zygote.serve()


if __name__ == "__main__":
    main()
