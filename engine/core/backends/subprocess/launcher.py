"""Builds one subprocess sandbox, then runs the agent in it. A standalone script (standard library only,
run as `python -I -B launcher.py CONFIG_JSON` by the subprocess backend); nothing here runs in the host.

Process layout with namespaces (root, or unprivileged user namespaces):

    launcher (outside)     joins the session's cgroups, unshares pid/mount/net/ipc/uts, forks init,
      |                    forwards SIGINT to it and exits with its status. The host SIGKILLs this
      |                    process to destroy the sandbox: init dies with it (PDEATHSIG), and when the
      |                    init of a pid namespace dies the kernel kills every process left inside,
      |                    setsid'd and double-forked daemons included.
      init (pid 1 inside)  builds a private root filesystem (read-only system dirs, the workdir, fresh
        |                  /proc, /dev and /tmp), pivots into it, forks the worker, forwards SIGINT,
        |                  reaps orphans, and exits with the worker's status.
        worker             drops to the session's uid, applies rlimits and no_new_privs, execs python.

A staged sandbox (the warm pool's) is built for no session yet: its worker stops before dropping
privileges, says `staged` on the frame pipe, and waits for the session's own settings (rlimits,
environment) as the first frame on the request pipe, so it can become a session with any limits.

Without namespaces the launcher applies what it can (rlimits, the uid) and execs the worker itself.
Failures before the agent starts are one JSON line on stderr and exit status 125."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import signal
import socket
import struct
import sys
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2

PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38

SETUP_FAILED = 125
_FRAME_HEADER = struct.Struct(">I")
_MAX_SPECIALIZATION = 1 << 20
_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}
_libc = ctypes.CDLL(None, use_errno=True)

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


def _mount(
    source: str | None, target: str, fstype: str | None, flags: int, data: str | None
) -> None:
    result = _libc.mount(
        source.encode() if source else None,
        target.encode(),
        fstype.encode() if fstype else None,
        ctypes.c_ulong(flags),
        data.encode() if data else None,
    )
    _check(result, f"mount {source or fstype} on {target}")


def _locked_flags(path: str) -> int:
    # A read-only remount must keep nosuid/nodev/noexec where the source had them, or the kernel
    # refuses it inside a user namespace.
    flags = os.statvfs(path).f_flag
    result = 0
    for st, ms in ((os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV), (os.ST_NOEXEC, MS_NOEXEC)):
        if flags & st:
            result |= ms
    return result


def _bind(source: str, target: str, *, writable: bool, device: bool = False) -> None:
    if os.path.isdir(source):
        os.makedirs(target, exist_ok=True)
    elif not os.path.exists(target):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "w"):
            pass
    _mount(source, target, None, MS_BIND | MS_REC, None)
    flags = MS_REMOUNT | MS_BIND | MS_NOSUID | _locked_flags(target)
    if not device:
        flags |= MS_NODEV
    if not writable:
        flags |= MS_RDONLY
    _mount(None, target, None, flags, None)


def _inside(root: str, path: str) -> str:
    return os.path.join(root, path.lstrip("/"))


def _write_file(path: str, text: str) -> None:
    with open(path, "w") as handle:
        handle.write(text)


def _build_root(cfg: dict[str, Any]) -> None:
    """Assemble the sandbox's filesystem under cfg['root_dir'] and pivot into it."""
    root = cfg["root_dir"]
    _mount(None, "/", None, MS_REC | MS_PRIVATE, None)
    _mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=8m,mode=0755")
    # /proc, /dev and /tmp first: binds below /tmp (an interpreter in a virtualenv under /tmp, say)
    # must land on the new /tmp, not be hidden by it.
    _build_dev(root)
    os.makedirs(_inside(root, "/proc"), exist_ok=True)
    _mount("proc", _inside(root, "/proc"), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
    tmp = _inside(root, "/tmp")
    os.makedirs(tmp, exist_ok=True)
    _mount("tmpfs", tmp, "tmpfs", MS_NOSUID | MS_NODEV, f"size={cfg['tmp_mb']}m,mode=1777")
    _seed(cfg.get("seed_dir"), os.path.join(tmp, "lci-seed"), cfg)
    for link in cfg["symlinks"]:
        target = _inside(root, link)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.symlink(os.readlink(link), target)
    for path in cfg["readonly"]:
        if os.path.exists(path):
            _bind(path, _inside(root, path), writable=False)
    _bind(cfg["workdir"], _inside(root, cfg["sandbox_workdir"]), writable=True)
    _bind(cfg["agent_root"], _inside(root, cfg["sandbox_agent_root"]), writable=False)
    _write_etc(root, cfg)
    os.chdir(root)
    # pivot_root(".", ".") stacks the old root under the new one; detaching "." then drops it.
    _check(_libc.syscall(_PIVOT_ROOT[os.uname().machine], b".", b"."), "pivot_root")
    _check(_libc.umount2(b".", MNT_DETACH), "detach old root")
    os.chdir("/")
    _mount(None, "/", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, None)


def _build_dev(root: str) -> None:
    dev = _inside(root, "/dev")
    os.makedirs(dev, exist_ok=True)
    _mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_NOEXEC, "size=64k,mode=0755")
    for name in ("null", "zero", "full", "random", "urandom"):
        _bind(f"/dev/{name}", os.path.join(dev, name), writable=True, device=True)
    os.makedirs(os.path.join(dev, "shm"))
    _mount("tmpfs", os.path.join(dev, "shm"), "tmpfs", MS_NOSUID | MS_NODEV, "size=16m,mode=1777")
    for name, target in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ):
        os.symlink(target, os.path.join(dev, name))


def _seed(source: str | None, target: str, cfg: dict[str, Any]) -> None:
    """Copy prepared caches (matplotlib's font list) into the sandbox's /tmp, owned by its user, so a
    new session does not spend seconds rebuilding them."""
    if not source or not os.path.isdir(source):
        return
    import shutil

    shutil.copytree(source, target)
    uid, gid = cfg.get("uid"), cfg.get("gid")
    if uid is not None and gid is not None:
        for directory, _, files in os.walk(target):
            os.chown(directory, uid, gid)
            for name in files:
                os.chown(os.path.join(directory, name), uid, gid)


def _write_etc(root: str, cfg: dict[str, Any]) -> None:
    etc = _inside(root, "/etc")
    os.makedirs(etc, exist_ok=True)
    uid, gid = cfg.get("uid") or os.getuid(), cfg.get("gid") or os.getgid()
    home = cfg["sandbox_workdir"]
    _write_file(
        os.path.join(etc, "passwd"),
        f"root:x:0:0:root:/root:/bin/sh\nsandbox:x:{uid}:{gid}:sandbox:{home}:/bin/sh\n",
    )
    _write_file(os.path.join(etc, "group"), f"root:x:0:\nsandbox:x:{gid}:\n")
    _write_file(os.path.join(etc, "hostname"), "sandbox\n")
    _write_file(os.path.join(etc, "hosts"), "127.0.0.1 localhost sandbox\n::1 localhost\n")


def _loopback_up() -> None:
    # A new network namespace has only a loopback device, and it starts down. Many libraries expect
    # localhost to work even when the network is off.
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    import fcntl

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14s", b"lo", 0, b"")
        flags = struct.unpack("16sH14s", fcntl.ioctl(sock, siocgifflags, request))[1]
        fcntl.ioctl(sock, siocsifflags, struct.pack("16sH14s", b"lo", flags | iff_up, b""))


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
    the (already imported) agent in place; otherwise the agent's interpreter is exec'd."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL, "PR_SET_PDEATHSIG")
    try:
        with open("/proc/self/oom_score_adj", "w") as handle:
            handle.write("1000")  # the sandbox, never the host, is the OOM killer's first choice
    except OSError:
        pass
    if cfg.get("in_process"):
        _reseed()  # before a staged sandbox waits: off the path of the session that claims it
    if cfg.get("staged"):
        cfg.update(_await_specialization(cfg["requests_fd"], cfg["frames_fd"]))
    uid, gid = cfg.get("uid"), cfg.get("gid")
    if uid is not None and gid is not None:
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    _apply_rlimits(cfg["rlimits"], bool(cfg.get("in_process")))
    _prctl(PR_SET_NO_NEW_PRIVS, 1, "PR_SET_NO_NEW_PRIVS")
    os.chdir(cfg["sandbox_workdir"])
    os.umask(0o077)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    if cfg.get("in_process"):
        _run_agent_in_process(cfg)
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


def _run_agent_in_process(cfg: dict[str, Any]) -> None:
    """The fork-server path: this process already imported the agent and the preloaded modules."""
    os.environ.clear()
    os.environ.update(cfg["env"])
    from lci_agent.kernel import main as agent_main  # type: ignore[import-not-found]

    agent_main(cfg["agent_args"])
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
    flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS
    if not cfg["network"]:
        flags |= CLONE_NEWNET
    if cfg["user_namespace"]:
        _enter_user_namespace(flags)
    else:
        _check(_libc.unshare(flags), "unshare")
    init = os.fork()
    if init:
        _supervise(init)
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL, "PR_SET_PDEATHSIG")
    _build_root(cfg)
    _check(_libc.sethostname(b"sandbox", 7), "sethostname")
    if not cfg["network"]:
        _loopback_up()
    worker = os.fork()
    if worker:
        _supervise(worker)
    _exec_worker(cfg)


def run_reporting_errors(cfg: dict[str, Any], parent_pid: int) -> None:
    try:
        run(cfg, parent_pid)
    except (SetupError, OSError) as exc:
        sys.stderr.write(json.dumps({"lci_setup_error": f"{type(exc).__name__}: {exc}"}) + "\n")
        sys.stderr.flush()
        os._exit(SETUP_FAILED)


def main() -> None:
    cfg = json.loads(sys.argv[1])
    run_reporting_errors(cfg, cfg["host_pid"])


if __name__ == "__main__":
    main()
