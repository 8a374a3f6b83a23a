"""`lci doctor`: what this host gives each backend, what is missing, and the fix for each.

Every check only looks (it starts no session and changes nothing), so it is safe to run anywhere;
the one exception is the check of a configured docker runtime (`LCI_DOCKER_RUNTIME`), which starts
one small docker session on it (see `doctor_runtime.py`).
The exit status is 0 when nothing required is missing, 1 when something is (each such line says
what to do); what is optional (a CJK font, a model server for `lci chat`/`lci serve`) is reported as
a warning with its fix and does not change the status. `lci serve` runs the model-server, docker and
Ray checks at start (the first two warn, an unreachable Ray address stops it).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from engine.cli.common import load_settings

if TYPE_CHECKING:
    from engine.config import Settings

_DATA_STACK = ("numpy", "pandas", "matplotlib", "sympy", "scipy")
_USERNS_PROBE = (
    "import ctypes, sys; "
    "sys.exit(ctypes.CDLL(None, use_errno=True).unshare(0x10000000 | 0x20000 | 0x40000000) != 0)"
)
_CJK_HINTS = ("cjk", "wenquanyi", "wqy", "droid sans fallback", "ipa", "takao", "nanum", "unifont")
_FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", str(Path.home() / ".fonts"))


@dataclass
class Check:
    backend: str  # "subprocess", "docker" or "both"
    name: str
    ok: bool
    detail: str
    fix: str = ""
    optional: bool = False  # missing, it is a warning: lci works without it


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "doctor", help="say what this host gives each backend and how to fix what is missing"
    )
    parser.add_argument("--json", action="store_true", help="print the checks as JSON")
    parser.add_argument("--no-docker", action="store_true", help="skip the docker checks")


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    checks: list[Callable[[Settings], Check]] = [
        _interpreter,
        _namespaces,
        _cgroups,
        _seccomp,
        _fonts,
        _state_dir,
        model_server_check,
    ]
    if settings.ray_address:
        checks.append(ray_check)
    if not args.no_docker:
        checks.append(docker_check)
        if settings.docker_runtime is not None:
            checks.append(_docker_runtime)
    results = [check(settings) for check in checks]
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
    else:
        for r in results:
            label = "ok     " if r.ok else "warning" if r.optional else "MISSING"
            print(f"{label}  {r.backend:<10} {r.name:<20} {r.detail}")
            if r.fix:
                print(f"{'':9}  {'':<10} {'':<20} fix: {r.fix}")
    return 0 if all(r.ok or r.optional for r in results) else 1


def _interpreter(settings: Settings) -> Check:
    python = settings.sandbox_python
    code = (
        "import importlib.util, json, sys; print(json.dumps([sys.version.split()[0], "
        f"[m for m in {list(_DATA_STACK)!r} if importlib.util.find_spec(m) is None]]))"
    )
    try:
        out = subprocess.run(
            [python, "-I", "-c", code], capture_output=True, text=True, timeout=60, check=True
        ).stdout
        version, missing = json.loads(out)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        return Check(
            "subprocess",
            "sandbox interpreter",
            False,
            f"{python} does not run ({exc})",
            "point LCI_SANDBOX_PYTHON at a Python 3.11+ interpreter",
        )
    if missing:
        return Check(
            "subprocess",
            "sandbox interpreter",
            False,
            f"{python} (Python {version}) lacks {', '.join(missing)}",
            f"{python} -m pip install {' '.join(missing)}",
        )
    stack = ", ".join(_DATA_STACK)
    return Check("subprocess", "sandbox interpreter", True, f"{python} (Python {version}), {stack}")


def _namespaces(settings: Settings) -> Check:
    if os.geteuid() == 0:
        return Check("subprocess", "namespaces", True, "root: pid, mount, network, user namespaces")
    probe = subprocess.run(
        [settings.sandbox_python, "-I", "-c", _USERNS_PROBE], capture_output=True, check=False
    )
    if probe.returncode == 0:
        return Check("subprocess", "namespaces", True, "unprivileged user namespaces work")
    return Check(
        "subprocess",
        "namespaces",
        False,
        "no user namespaces for this user: sessions get rlimits only, no isolation",
        "run lci as root, or allow them: sysctl -w kernel.unprivileged_userns_clone=1 "
        "(Debian) / kernel.apparmor_restrict_unprivileged_userns=0 (Ubuntu 24.04)",
    )


def _cgroups(settings: Settings) -> Check:
    root = Path("/sys/fs/cgroup")
    if (root / "cgroup.controllers").exists():
        version = "v2"
        writable = os.access(root, os.W_OK)
    elif (root / "memory").is_dir():
        version = "v1"
        writable = os.access(root / "memory", os.W_OK)
    else:
        return Check(
            "subprocess",
            "cgroups",
            False,
            "no cgroup filesystem at /sys/fs/cgroup: memory is limited per process only",
            "mount cgroup2 at /sys/fs/cgroup",
        )
    if writable:
        return Check("subprocess", "cgroups", True, f"{version}, writable: exact memory/pids/cpu")
    return Check(
        "subprocess",
        "cgroups",
        False,
        f"{version}, not writable by this user: memory per process, processes per user",
        "run lci as root (or in a container with its own writable cgroup)",
    )


def _seccomp(settings: Settings) -> Check:
    status = Path("/proc/self/status").read_text()
    if "Seccomp:" in status:
        return Check("both", "seccomp", True, "the kernel supports seccomp filters")
    return Check(
        "both",
        "seccomp",
        False,
        "this kernel has no seccomp: no system-call filter",
        "use a kernel built with CONFIG_SECCOMP_FILTER",
    )


def _fonts(settings: Settings) -> Check:
    found = []
    for folder in _FONT_DIRS:
        for dirpath, _, names in os.walk(folder):
            found += [n for n in names if any(h in n.lower() for h in _CJK_HINTS)]
            found += [dirpath] if any(h in dirpath.lower() for h in _CJK_HINTS) and names else []
    if found:
        return Check(
            "both", "CJK fonts", True, f"{len(found)} font files with CJK glyphs", optional=True
        )
    return Check(
        "both",
        "CJK fonts",
        False,
        "no CJK font: Chinese/Japanese/Korean text in figures renders as boxes",
        # The package the sandbox image installs and the agent's own hint name.
        "apt-get install fonts-wqy-microhei (the docker image has it)",
        optional=True,
    )


def _state_dir(settings: Settings) -> Check:
    path = settings.state_dir
    try:
        info = path.stat()
    except FileNotFoundError:
        return Check("both", "state dir", True, f"{path} (created on first use)")
    if info.st_uid != os.geteuid():
        return Check(
            "both",
            "state dir",
            False,
            f"{path} belongs to uid {info.st_uid}, not to this user ({os.geteuid()})",
            f"set LCI_STATE_DIR to a directory of your own, or remove {path}",
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return Check(
            "both",
            "state dir",
            False,
            f"{path} is writable by other users",
            f"chmod go-w {path}",
        )
    return Check("both", "state dir", True, f"{path}, owned by this user")


def model_server_check(settings: Settings, timeout_s: float = 2.0) -> Check:
    """Whether something listens at the model server's address (`lci chat` and the loop of
    `lci serve` need it; `lci exec`, the session API, MCP and E2B do not)."""
    url = settings.llm_base_url
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    problem = _unreachable(parts.hostname or "", port, timeout_s)
    if problem is None:
        return Check("both", "model server", True, f"{url} answers", optional=True)
    return Check(
        "both",
        "model server",
        False,
        f"no model server at {url} ({problem}): lci chat and the code-interpreter loop of lci "
        "serve fail until one answers",
        "start an OpenAI-compatible model server there, or point --llm-base-url / "
        "LCI_LLM_BASE_URL at yours (docs/chat-loop.md)",
        optional=True,
    )


def ray_check(settings: Settings, timeout_s: float = 3.0) -> Check:
    """Whether the Ray cluster's address answers (`ray.init` would otherwise retry for ever)."""
    address = settings.ray_address or ""
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if address == "auto" or not port.isdigit():
        return Check("both", "ray cluster", True, f"{address} (not checked: no host:port)")
    problem = _unreachable(host.strip("[]"), int(port), timeout_s)
    if problem is None:
        return Check("both", "ray cluster", True, f"{address} answers")
    return Check(
        "both",
        "ray cluster",
        False,
        f"cannot reach the Ray cluster at {address} ({problem})",
        "start the cluster (ray start --head) or give its GCS address as --ray-address / "
        "LCI_RAY_ADDRESS, e.g. 10.0.0.5:6379",
    )


def _unreachable(host: str, port: int, timeout_s: float) -> str | None:
    """Why a TCP connection to host:port fails within `timeout_s`; None if it opens."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return None
    except TimeoutError:
        return f"no answer within {timeout_s:g} s"
    except OSError as exc:
        return exc.strerror or str(exc)


def docker_check(settings: Settings) -> Check:
    try:
        from engine.core.backends.docker.api import unavailable_reason
    except ImportError as exc:  # the SDK is a dependency; an odd install may lack it
        return Check("docker", "docker", False, str(exc), "pip install docker")
    reason = unavailable_reason(settings.docker_image)
    if reason is None:
        return Check("docker", "docker", True, f"daemon answers, image {settings.docker_image}")
    fix = (
        "lci image build"
        if "lci image build" in reason
        else "start the Docker daemon (and let this user reach /var/run/docker.sock)"
    )
    return Check("docker", "docker", False, reason, fix)


def _docker_runtime(settings: Settings) -> Check:
    from engine.cli.doctor_runtime import runtime_check

    ok, detail, fix = runtime_check(settings)
    return Check("docker", "docker runtime", ok, detail, fix)


if __name__ == "__main__":
    sys.exit(run(argparse.Namespace(json=False, no_docker=False)))
