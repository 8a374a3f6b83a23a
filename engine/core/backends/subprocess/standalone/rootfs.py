"""The sandbox's private root filesystem, built by the launcher's init process: read-only system
directories, the session's workdir, fresh /proc, /dev and /tmp, a minimal /etc, then pivot_root.
Standard library only, loaded by `launcher.py` from its own directory; errors are OSErrors."""

from __future__ import annotations

import ctypes
import os
import socket
import stat
import struct
from typing import Any

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2
_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}
_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


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


def build_root(cfg: dict[str, Any]) -> None:
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
    for alias in cfg.get("workdir_aliases", ()):
        # The same directory where clients expect it, unless the path is taken (a system path).
        if not os.path.lexists(_inside(root, alias)):
            _bind(cfg["workdir"], _inside(root, alias), writable=True)
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
    _build_pts(dev)
    for name, target in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ):
        os.symlink(target, os.path.join(dev, name))


def _build_pts(dev: str) -> None:
    """Terminals for the process service's PTYs: a devpts instance of the sandbox's own (no pty of
    the host is visible in it). Where the kernel refuses one, there are no terminals, only that."""
    pts = os.path.join(dev, "pts")
    os.makedirs(pts)
    try:
        _mount(
            "devpts", pts, "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620"
        )
    except OSError:
        return
    os.symlink("pts/ptmx", os.path.join(dev, "ptmx"))


def _seed(source: str | None, target: str, cfg: dict[str, Any]) -> None:
    """Copy prepared caches (matplotlib's font list) into the sandbox's /tmp, owned by its user, so a
    new session does not spend seconds rebuilding them. This runs with the engine's privileges and
    still sees the host's files: only directories and regular files are copied, each opened without
    following symlinks, so a link planted in the seed can never carry a host file in."""
    if not source:
        return
    try:
        fd = os.open(source, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return
    uid, gid = cfg.get("uid"), cfg.get("gid")
    _copy_dir(fd, target, uid, gid)


def _copy_dir(fd: int, target: str, uid: int | None, gid: int | None) -> None:
    """Copy the directory open at `fd` (closed here) to `target`, without following symlinks."""
    try:
        os.mkdir(target, 0o700)
        if uid is not None and gid is not None:
            os.chown(target, uid, gid)
        for entry in os.scandir(fd):
            if entry.is_dir(follow_symlinks=False):
                flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                child = os.open(entry.name, flags, dir_fd=fd)
                _copy_dir(child, os.path.join(target, entry.name), uid, gid)
            elif entry.is_file(follow_symlinks=False):
                _copy_file(fd, entry.name, os.path.join(target, entry.name), uid, gid)
    finally:
        os.close(fd)


def _copy_file(dir_fd: int, name: str, target: str, uid: int | None, gid: int | None) -> None:
    source = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    try:
        if not stat.S_ISREG(os.fstat(source).st_mode):
            return  # a FIFO or device swapped in after the scan
        out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            while chunk := os.read(source, 1 << 20):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(out, view) :]
            if uid is not None and gid is not None:
                os.fchown(out, uid, gid)
        finally:
            os.close(out)
    finally:
        os.close(source)


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
    if cfg.get("resolv_conf"):
        _write_file(os.path.join(etc, "resolv.conf"), cfg["resolv_conf"])


def loopback_up() -> None:
    # A new network namespace has only a loopback device, and it starts down. Many libraries expect
    # localhost to work even when the network is off.
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    import fcntl

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14s", b"lo", 0, b"")
        flags = struct.unpack("16sH14s", fcntl.ioctl(sock, siocgifflags, request))[1]
        fcntl.ioctl(sock, siocsifflags, struct.pack("16sH14s", b"lo", flags | iff_up, b""))


def hide_command_line(title: bytes) -> None:
    """Overwrite this process's command line (what /proc/<pid>/cmdline shows) with `title`: the
    sandbox's init was started as `<host interpreter> <path of this script> ...`, and every cell
    could read those host paths in /proc/1/cmdline. The kernel reads the command line from the
    process's own memory (its argv strings, arg_start..arg_end in /proc/self/stat), so writing
    there is enough; Python keeps its own copies of argv and never reads these bytes again."""
    with open("/proc/self/stat", "rb") as handle:
        # Fields after the command name, which is in parentheses and may hold spaces: the rest
        # starts at field 3, so arg_start and arg_end (fields 48 and 49) are at 45 and 46.
        fields = handle.read().rsplit(b")", 1)[1].split()
    start, end = int(fields[45]), int(fields[46])
    title = title[: max(end - start - 1, 0)]
    ctypes.memset(start, 0, end - start)
    ctypes.memmove(start, title, len(title))
