"""What isolation this host can give subprocess sandboxes, found out once per backend: root or
unprivileged user namespaces, cgroups, which host paths the sandbox interpreter needs to see. Also
owns the engine's directory of session state and the reaping of what dead engines left behind."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.config import Settings
from engine.core import workdir as wd
from engine.core.backends.subprocess.cgroups import CgroupTree
from engine.core.owners import owner_alive, owner_tag
from engine.core.state_dir import UnsafeStateDir, check_private, prepare_state_dir
from engine.core.syscalls import NAME as SECCOMP_NAME
from engine.core.syscalls import sandbox_filter
from engine.errors import BackendUnavailable
from engine.models import Isolation, Limits

_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_ETC_FILES = (
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "timezone",
    "ssl",
    "ca-certificates",
    "fonts",
    "alternatives",
    "mime.types",
    "nsswitch.conf",
    "matplotlibrc",
    "python3",
    "python3.11",
    "python3.12",
    "python3.13",
)
_USERNS_PROBE = (
    "import ctypes, sys; "
    "sys.exit(ctypes.CDLL(None, use_errno=True).unshare(0x10000000 | 0x20000 | 0x40000000) != 0)"
)


def _no_interpreter(python: str, reason: str) -> BackendUnavailable:
    return BackendUnavailable(
        f"the sandbox interpreter {python} does not run ({reason}): set LCI_SANDBOX_PYTHON "
        "(Settings.sandbox_python) to a Python 3.11+ interpreter, or leave it unset"
    )


def check_interpreter(python: str) -> None:
    """BackendUnavailable, in one sentence, when `python` is not an executable file."""
    if not os.path.isfile(python):
        raise _no_interpreter(python, "no such file")
    if not os.access(python, os.X_OK):
        raise _no_interpreter(python, "not executable")


@functools.lru_cache(maxsize=8)
def _interpreter_paths(python: str) -> list[str]:
    """Directories the sandbox interpreter needs: its prefixes (stdlib and site-packages)."""
    code = (
        "import sys, json; print(json.dumps([sys.prefix, sys.base_prefix, sys.exec_prefix, "
        "sys.base_exec_prefix]))"
    )
    try:
        out = subprocess.run(
            [python, "-I", "-c", code], capture_output=True, text=True, check=True, timeout=60
        ).stdout
        prefixes = json.loads(out)
    except subprocess.CalledProcessError as exc:
        raise _no_interpreter(python, f"it exited with status {exc.returncode}") from None
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        raise _no_interpreter(python, str(exc)) from None
    paths = {os.path.realpath(p) for p in prefixes}
    paths.add(os.path.dirname(os.path.dirname(os.path.realpath(python))))
    return sorted(paths)


def _prepare_seed(settings: Settings) -> Path | None:
    """Build matplotlib's font cache once per interpreter (when it has matplotlib), to be copied into
    each new sandbox. Returns the directory holding `matplotlib/`, or None."""
    python = os.path.realpath(settings.sandbox_python)
    # The font cache lists the installed fonts: a font installed later (a CJK one, say) makes
    # a new seed, not a cache that never shows it.
    key = hashlib.sha256("\0".join([python, *_font_files()]).encode()).hexdigest()[:12]
    seed = settings.state_dir / f"seed-{key}"
    if _usable_seed(seed):
        return seed
    staging = settings.state_dir / f".seed-{os.getpid()}"
    code = "try:\n import matplotlib.font_manager\nexcept ImportError:\n raise SystemExit(3)"
    env = {"PATH": "/usr/bin:/bin", "MPLCONFIGDIR": str(staging / "matplotlib"), "LANG": "C.UTF-8"}
    try:
        result = subprocess.run(
            [settings.sandbox_python, "-I", "-c", code],
            env=env,
            timeout=300,
            capture_output=True,
            check=False,
        )
        if result.returncode != 0:
            return None
        staging.rename(seed)
    except (OSError, subprocess.SubprocessError):
        return seed if _usable_seed(seed) else None
    finally:
        if staging.exists():
            wd.remove_tree(str(staging))
    return seed


def host_addresses() -> list[str]:
    """The host's own IPv4 addresses (from /proc/net/fib_trie's local entries): a sandbox with
    the network must not reach services the host listens to on them."""
    found: set[str] = set()
    try:
        with open("/proc/net/fib_trie") as handle:
            previous = ""
            for line in handle:
                text = line.strip()
                if text == "/32 host LOCAL":
                    found.add(previous.removeprefix("|-- "))
                previous = text
    except OSError:
        pass
    return sorted(a for a in found if a and not a.startswith("127."))


def _find_slirp4netns() -> str | None:
    """slirp4netns, if it is installed and can open the TUN device as this user."""
    if os.geteuid() != 0 and not os.access("/dev/net/tun", os.R_OK | os.W_OK):
        return None
    return shutil.which("slirp4netns", path="/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")


def _usable_seed(seed: Path) -> bool:
    """A seed this engine's user made: only such a one is copied into sandboxes (and the copy
    takes regular files only, never following a symlink)."""
    try:
        check_private(seed, "seed directory")
        check_private(seed / "matplotlib", "seed directory")
    except UnsafeStateDir:
        return False
    return True


def _kernel_has_seccomp() -> bool:
    with contextlib.suppress(OSError), open("/proc/self/status") as status:
        return any(line.startswith("Seccomp:") for line in status)
    return False


def _font_files() -> list[str]:
    found = []
    for directory in ("/usr/share/fonts", "/usr/local/share/fonts"):
        for root, _, files in os.walk(directory):
            found += [os.path.join(root, name) for name in files]
    return sorted(found)


def _without_nested(paths: list[str]) -> list[str]:
    kept: list[str] = []
    for path in sorted(set(paths)):
        if not any(path == k or path.startswith(k.rstrip("/") + "/") for k in kept):
            kept.append(path)
    return kept


@dataclass
class MachineProbe:
    is_root: bool
    namespaces: bool
    cgroups: CgroupTree | None
    agent_root: Path
    owner_dir: Path
    readonly_paths: list[str]
    symlinks: list[str]
    owner_tag: str = field(default_factory=owner_tag)
    seed_dir: Path | None = None
    slirp4netns: str | None = field(default_factory=_find_slirp4netns)
    seccomp: dict[str, Any] | None = None  # the filter sandboxes get (see engine/core/syscalls)

    @classmethod
    def detect(cls, settings: Settings, agent_root: Path) -> MachineProbe:
        check_interpreter(settings.sandbox_python)
        is_root = os.geteuid() == 0
        namespaces = is_root or cls._user_namespaces_work(settings.sandbox_python)
        readonly, symlinks = [], []
        for path in _SYSTEM_DIRS:
            if os.path.islink(path):
                symlinks.append(path)
            elif os.path.isdir(path):
                readonly.append(path)
        readonly += [f"/etc/{name}" for name in _ETC_FILES if os.path.lexists(f"/etc/{name}")]
        readonly += [*_interpreter_paths(settings.sandbox_python), *settings.extra_readonly_paths]
        tag = owner_tag()
        owner_dir = settings.state_dir / f"owner-{tag}"
        prepare_state_dir(settings.state_dir)
        owner_dir.mkdir(mode=0o711, exist_ok=True)
        probe = cls(
            is_root=is_root,
            namespaces=namespaces,
            cgroups=CgroupTree.detect() if is_root else None,
            agent_root=agent_root,
            owner_dir=owner_dir,
            readonly_paths=_without_nested(readonly),
            symlinks=symlinks,
            owner_tag=tag,
        )
        probe.seed_dir = _prepare_seed(settings)
        if settings.seccomp and _kernel_has_seccomp():
            probe.seccomp = sandbox_filter()
        probe.reap_orphans()
        return probe

    @staticmethod
    def _user_namespaces_work(python: str) -> bool:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            probe = subprocess.run(
                [python, "-I", "-S", "-c", _USERNS_PROBE],
                timeout=30,
                capture_output=True,
                check=False,
            )
            return probe.returncode == 0
        return False

    def isolation(self, limits: Limits) -> Isolation:
        notes = []
        if not self.namespaces:
            notes.append(
                "no namespaces (not root and no unprivileged user namespaces): the sandbox "
                "shares the host's filesystem view, network and process table"
            )
        if not self.is_root:
            notes.append("not root: the sandbox runs as the engine's own user")
        if self.seccomp is None:
            notes.append("no syscall filter (turned off, or no seccomp for this kernel or CPU)")
        if self.cgroups is None:
            notes.append(
                "no usable cgroups: memory is limited per process (RLIMIT_AS) and "
                "processes per user (RLIMIT_NPROC)"
            )
        cpu = self.cgroups is not None and "cpu" in self.cgroups.bases and limits.cpus is not None
        return Isolation(
            separate_user=self.is_root,
            pid_namespace=self.namespaces,
            mount_namespace=self.namespaces,
            network_namespace=self.namespaces,
            private_filesystem=self.namespaces,
            memory_limit="exact" if self.cgroups else "per_process",
            process_limit="exact" if self.cgroups else "per_user",
            disk_limit="exact" if self.is_root else "per_file",
            cpu_quota=cpu,
            syscall_filter=SECCOMP_NAME if self.seccomp is not None else None,
            notes=notes,
        )

    def reap_orphans(self) -> int:
        """Remove the workdirs, mounts and cgroups of engines that are no longer running."""
        reaped = 0
        state_dir = self.owner_dir.parent
        for entry in state_dir.glob("owner-*"):
            tag = entry.name.removeprefix("owner-")
            if tag != self.owner_tag and not owner_alive(tag):
                wd.remove_dir(entry)
                reaped += 1
        if self.cgroups is not None:
            for name, group in self.cgroups.groups().items():
                tag = name.split("-", 1)[0]
                if tag != self.owner_tag and not owner_alive(tag):
                    group.kill_all()
                    group.remove()
                    reaped += 1
        return reaped

    def remove_owner_dir(self) -> None:
        wd.remove_dir(self.owner_dir)
