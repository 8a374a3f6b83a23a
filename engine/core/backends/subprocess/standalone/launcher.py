"""Builds one subprocess sandbox, then runs the agent in it. A standalone script (standard library only,
run as `python -I -B launcher.py --config-fd=N` by the subprocess backend); nothing here runs in the host.

Process layout with namespaces (root, or unprivileged user namespaces):

    launcher (outside)     joins the session's cgroups, unshares pid/mount/net/ipc/uts/cgroup, forks
      |                    init, forwards SIGINT to it and exits with its status. The host SIGKILLs
      |                    this process to destroy the sandbox: init dies with it (PDEATHSIG), and when
      |                    the init of a pid namespace dies the kernel kills every process left inside,
      |                    setsid'd and double-forked daemons included.
      init (pid 1 inside)  hides its command line (the host's paths), builds a private root filesystem
        |                  (read-only system dirs, the workdir, fresh /proc, /dev and /tmp), pivots
        |                  into it, forks the worker, forwards SIGINT, reaps orphans, and exits with
        |                  the worker's status.
        worker             drops every capability and the session's uid, applies rlimits and
                           no_new_privs, execs python (or runs the preloaded agent in place).

A staged sandbox (the warm pool's) is built for no session yet: it says `staged` on the frame pipe
and waits for the session's own settings (rlimits, environment) as the first frame on the request
pipe, so it can become a session with any limits. A fork-server child waits with its privileges
dropped and its agent (relay and kernel) started, so that claiming it costs no fork; an exec'd
worker waits before dropping them, and is exec'd with the session's settings.

With `join` (the pid of a running sandbox's init) the launcher builds nothing: it enters that
sandbox's cgroups, namespaces and root and forks a worker there, which runs the process service.

Without namespaces the launcher applies what it can (rlimits, the uid) and execs the worker itself.
Failures before the agent starts are one JSON line on stderr and exit status 125."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import signal
import struct
import sys
from collections.abc import Callable
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# What a process joining a running sandbox enters, after its user namespace if it has one.
JOINED_NAMESPACES = ("cgroup", "ipc", "uts", "net", "pid", "mnt")

PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38

SETUP_FAILED = 125
_FRAME_HEADER = struct.Struct(">I")
_MAX_SPECIALIZATION = 1 << 20
_libc = ctypes.CDLL(None, use_errno=True)


def _load_sibling(name: str) -> Any:
    """The launcher runs as a script in isolated mode, so nothing beside it is importable: its
    helpers (standard library only, like itself) are loaded from its own directory by path, at
    start-up, before the sandbox's private root hides that directory."""
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"lci_launcher_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


rootfs = _load_sibling("rootfs")
caps = _load_sibling("caps")
netns = _load_sibling("netns")
seccomp = _load_sibling("seccomp")

RLIMITS = {
    "cpu": resource.RLIMIT_CPU,
    "as": resource.RLIMIT_AS,
    "fsize": resource.RLIMIT_FSIZE,
    "nofile": resource.RLIMIT_NOFILE,
    "nproc": resource.RLIMIT_NPROC,
    "core": resource.RLIMIT_CORE,
    "memlock": resource.RLIMIT_MEMLOCK,
    "msgqueue": resource.RLIMIT_MSGQUEUE,
}


class SetupError(Exception):
    pass


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise SetupError(f"{what}: {os.strerror(errno)}")


def _prctl(option: int, value: int, what: str) -> None:
    _check(_libc.prctl(option, value, 0, 0, 0), what)


def _mapped_bytes() -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _apply_rlimits(limits: dict[str, int], in_process: bool) -> None:
    limits = dict(limits)
    if in_process and "as" in limits:
        # A fork-server child already maps the preloaded modules; the limit is on what it adds.
        limits["as"] += _mapped_bytes()
    for name, value in limits.items():
        resource.setrlimit(RLIMITS[name], (value, value) if name != "cpu" else (value, value + 1))


def _exec_worker(cfg: dict[str, Any]) -> None:
    """Final steps in the process that becomes the agent; never returns. A fork-server child runs
    the (already imported) agent in place; otherwise the agent's interpreter is exec'd.

    A staged fork-server child drops its privileges and starts the agent (relay included) before
    it waits for its session: forking the relay copies the whole preloaded interpreter, which
    must not be on the path of the session that claims the sandbox. Only the rlimits and the
    environment wait for the session (`_specialize_after_fork`). A staged exec'd worker waits
    first: the new interpreter is started with the session's rlimits and environment."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL, "PR_SET_PDEATHSIG")
    try:
        with open("/proc/self/oom_score_adj", "w") as handle:
            handle.write("1000")  # the sandbox, never the host, is the OOM killer's first choice
    except OSError:
        pass
    in_process, staged = bool(cfg.get("in_process")), bool(cfg.get("staged"))
    if in_process:
        _reseed()  # before a staged sandbox waits: off the path of the session that claims it
    if staged and not in_process:
        cfg.update(_await_specialization(cfg["requests_fd"], cfg["frames_fd"]))
    bounding_dropped = caps.drop_bounding_and_ambient()  # while CAP_SETPCAP is still held
    uid, gid = cfg.get("uid"), cfg.get("gid")
    if uid is not None and gid is not None:
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
        if cfg.get("seccomp"):  # the uid may have served an earlier sandbox
            seccomp.clear_keyrings(_libc, cfg["seccomp"]["keyctl"])
    if not (staged and in_process):
        # Lowering a hard limit needs no privilege: applied after the specialization, they are
        # the session's own as much as here.
        _apply_rlimits(cfg["rlimits"], in_process)
    caps.clear_process_sets()  # a user namespace's full set, kept by the fork server's no-exec path
    _prctl(PR_SET_NO_NEW_PRIVS, 1, "PR_SET_NO_NEW_PRIVS")
    caps.check_none_left(bounding_dropped)
    if cfg.get("seccomp"):
        seccomp.install(_libc, cfg["seccomp"])
    os.chdir(cfg["sandbox_workdir"])
    os.umask(0o077)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    if in_process:
        _run_agent_in_process(cfg, _specialize_after_fork if staged else None)
    os.execve(cfg["python"], cfg["argv"], cfg["env"])


def _await_specialization(requests_fd: int, frames_fd: int) -> dict[str, Any]:
    """Report the sandbox built, then block until the host hands it a session: one frame of the
    agent protocol, read exactly, so that the agent finds the requests after it untouched."""
    body = json.dumps({"type": "staged"}).encode()
    os.write(frames_fd, _FRAME_HEADER.pack(len(body)) + body)  # under PIPE_BUF: one atomic write
    (length,) = _FRAME_HEADER.unpack(_read_exactly(requests_fd, _FRAME_HEADER.size))
    if length > _MAX_SPECIALIZATION:
        raise SetupError(f"specialization frame of {length} bytes")
    frame = json.loads(_read_exactly(requests_fd, length))
    if not isinstance(frame, dict) or frame.get("type") != "specialize":
        raise SetupError("the first request to a staged sandbox must be `specialize`")
    return {"rlimits": frame["rlimits"], "env": frame["env"]}


def _read_exactly(fd: int, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = os.read(fd, size - len(data))
        if not chunk:
            raise SetupError("the host closed the request pipe before specializing the sandbox")
        data += chunk
    return bytes(data)


def _reseed() -> None:
    """A fork copies the parent's generator state: every session would draw the same numbers."""
    import random

    random.seed()
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:  # not imported yet: it seeds itself from the OS when it is
        numpy_random.seed()


def _specialize_after_fork(requests_fd: int, frames_fd: int) -> None:
    """In the kernel of a staged fork-server sandbox, its relay forked: wait for the session, then
    take its rlimits and environment before the agent says hello."""
    specialization = _await_specialization(requests_fd, frames_fd)
    _apply_rlimits(specialization["rlimits"], in_process=True)
    os.environ.clear()
    os.environ.update(specialization["env"])


def _run_agent_in_process(
    cfg: dict[str, Any], before_serving: Callable[[int, int], None] | None
) -> None:
    """The fork-server path: this process already imported the agent and the preloaded modules."""
    os.environ.clear()
    os.environ.update(cfg["env"])
    from lci_agent.entry import main as agent_main  # type: ignore[import-not-found]

    agent_main(cfg["agent_args"], before_serving)
    os._exit(0)


def _close_everything() -> None:
    """The supervising processes must not hold the agent's pipes, or the host would miss their EOF."""
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.closerange(3, 65536)


def _supervise(child: int) -> None:
    """Forward interrupts to `child`, reap every orphan, exit with the child's status."""

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    _close_everything()
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            os._exit(1)
        if pid == child:
            code = os.waitstatus_to_exitcode(status)
            os._exit(code if code >= 0 else 128 - code)


def _write_file(path: str, text: str) -> None:
    with open(path, "w") as handle:
        handle.write(text)


def _enter_user_namespace(flags: int) -> None:
    uid, gid = os.getuid(), os.getgid()
    _check(_libc.unshare(flags | CLONE_NEWUSER), "unshare (user namespace)")
    _write_file("/proc/self/setgroups", "deny")
    _write_file("/proc/self/uid_map", f"{uid} {uid} 1\n")
    _write_file("/proc/self/gid_map", f"{gid} {gid} 1\n")


def run(cfg: dict[str, Any], parent_pid: int) -> None:
    """Build the sandbox described by `cfg` and become its agent (or its supervisor)."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL, "PR_SET_PDEATHSIG")
    if os.getppid() != parent_pid:
        os._exit(SETUP_FAILED)  # the parent died before the death signal was armed
    for procs in cfg["cgroups"]:
        _write_file(procs, str(os.getpid()))
    if not cfg["namespaces"]:
        _exec_worker(cfg)
    # Always a network namespace of its own; with `network` it is connected to the outside by a
    # slirp4netns forked first, so that it stays in the host's network namespace. A cgroup
    # namespace, made after joining the session's cgroups, roots /proc/self/cgroup there: the
    # cgroup's host path names the engine's pid.
    flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNET
    flags |= CLONE_NEWCGROUP
    slirp = netns.Slirp(cfg["slirp4netns"], cfg["user_namespace"]) if cfg["network"] else None
    if cfg["user_namespace"]:
        _enter_user_namespace(flags)
    else:
        _check(_libc.unshare(flags), "unshare")
    if slirp is not None:
        slirp.connect(cfg["blocked_addresses"])
    init = os.fork()
    if init:
        _supervise(init)
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL, "PR_SET_PDEATHSIG")
    rootfs.hide_command_line(b"lci-sandbox-init")  # before the worker, which inherits it forked
    rootfs.build_root(cfg)
    _check(_libc.sethostname(b"sandbox", 7), "sethostname")
    rootfs.loopback_up()
    worker = os.fork()
    if worker:
        _supervise(worker)
    _exec_worker(cfg)


def join(cfg: dict[str, Any], parent_pid: int) -> None:
    """Start a process in the running sandbox whose init is `cfg["join"]` (the process service):
    the session's cgroups, that sandbox's namespaces and root, then the same worker steps (uid,
    rlimits, capabilities, no_new_privs, seccomp) as its agent. It dies with that sandbox."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL, "PR_SET_PDEATHSIG")
    if os.getppid() != parent_pid:
        os._exit(SETUP_FAILED)
    for procs in cfg["cgroups"]:
        _write_file(procs, str(os.getpid()))
    if not cfg["namespaces"]:
        _exec_worker(cfg)
    target = int(cfg["join"])
    names = (["user"] if cfg["user_namespace"] else []) + list(JOINED_NAMESPACES)
    spaces = [os.open(f"/proc/{target}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC) for name in names]
    root = os.open(f"/proc/{target}/root", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    for name, fd in zip(names, spaces, strict=True):
        _check(_libc.setns(fd, 0), f"setns ({name})")
        os.close(fd)
    os.fchdir(root)  # the sandbox's own root, as its init pivoted into it
    os.chroot(".")
    os.close(root)
    worker = os.fork()  # the pid namespace applies to children only
    if worker:
        _supervise(worker)
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL, "PR_SET_PDEATHSIG")
    _exec_worker(cfg)


def run_reporting_errors(cfg: dict[str, Any], parent_pid: int) -> None:
    try:
        if cfg.get("join"):
            join(cfg, parent_pid)
        run(cfg, parent_pid)
    except (SetupError, OSError) as exc:
        sys.stderr.write(json.dumps({"lci_setup_error": f"{type(exc).__name__}: {exc}"}) + "\n")
        sys.stderr.flush()
        os._exit(SETUP_FAILED)


def main() -> None:
    """`launcher.py --config-fd=N`: the config is read from descriptor N (a memfd), so nothing
    of the session's settings shows on the command line."""
    # A blocked signal mask survives exec: an engine thread that blocks signals (a Ray worker's
    # do) would pass it on, and the cell would never see the SIGINT of an interrupt.
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    fd = int(sys.argv[1].removeprefix("--config-fd="))
    with os.fdopen(fd, "rb") as handle:
        cfg = json.loads(handle.read())
    run_reporting_errors(cfg, cfg["host_pid"])


if __name__ == "__main__":
    main()
