"""A Docker daemon of one's own, for faults and set-ups that must not touch the host's daemon.

It runs in its own mount and network namespaces (its bridge and firewall rules touch nothing of
the host's), with its own data root, exec root, pid file and socket, reached through DOCKER_HOST.
The soak restarts it as a fault; the set-up tests run the docker suite against it. Needs root,
`unshare`, `ip` and `dockerd`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from benchmarks.common import progress


class PrivateDaemon:
    """`runtimes`: OCI runtimes to register besides runc, as daemon.json's "runtimes" (name ->
    {"path": ..., "runtimeArgs": [...]})."""

    def __init__(
        self,
        base: Path,
        *,
        live_restore: bool = False,
        runtimes: dict[str, dict[str, object]] | None = None,
    ) -> None:
        self.base = base
        self.socket = base / "docker.sock"  # keep `base` short: a socket path has 108 bytes
        self.host = f"unix://{self.socket}"
        self.log = base / "dockerd.log"
        self.live_restore = live_restore
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self.runtimes = runtimes or {}

    @property
    def env(self) -> dict[str, str]:
        """The environment of a process that is to use this daemon."""
        return {**os.environ, "DOCKER_HOST": self.host}

    def start(self, timeout: float = 90) -> None:
        dockerd = [
            "dockerd",
            f"--host={self.host}",
            f"--data-root={self.base / 'data'}",
            f"--exec-root={self.base / 'exec'}",
            f"--pidfile={self.base / 'dockerd.pid'}",
        ]
        if self.live_restore:
            dockerd.append("--live-restore")
        if self.runtimes:
            config = self.base / "daemon.json"
            config.write_text(json.dumps({"runtimes": self.runtimes}))
            dockerd.append(f"--config-file={config}")
        script = 'ip link set lo up && exec "$@"'
        # The namespaces are made anew on each start: a restarted daemon finds its containers in
        # its data root, as after a restart of the host's daemon.
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                ["unshare", "--mount", "--net", "--fork", "sh", "-c", script, "sh", *dockerd],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while self.docker("info").returncode != 0:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"the private dockerd did not answer:\n{self.log.read_text()[-3000:]}"
                )
            time.sleep(0.5)

    def docker(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(["docker", *args], env=self.env, capture_output=True, check=False)

    def load(self, image: str) -> None:
        """Copy `image` from the host's daemon."""
        progress(f"private dockerd: loading {image} from the host's daemon")
        save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
        loaded = subprocess.run(
            ["docker", "load"], stdin=save.stdout, env=self.env, capture_output=True, check=False
        )
        assert save.stdout is not None
        save.stdout.close()
        if save.wait() != 0 or loaded.returncode != 0:
            raise RuntimeError(f"cannot load {image}: {loaded.stderr.decode(errors='replace')}")

    def restart(self) -> None:
        """Stop the daemon (as `systemctl restart docker` does: SIGTERM, then wait) and start it."""
        self._terminate()
        self.start()
        self.restarts += 1

    def stop(self) -> None:
        self._terminate()
        # Its mounts lived in its own namespace: the data root is plain directories now.
        shutil.rmtree(self.base / "data", ignore_errors=True)
        shutil.rmtree(self.base / "exec", ignore_errors=True)

    def _terminate(self) -> None:
        if self.process is None:
            return
        # dockerd itself is told to stop and waited for (the unshare wrapper would exit at once,
        # and a new daemon on the same data root beside a stopping one fails both).
        dockerd = self._dockerd_pid()
        with contextlib.suppress(ProcessLookupError):
            os.kill(dockerd or self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
            if dockerd is not None:
                _wait_gone(dockerd, 60)
        except (subprocess.TimeoutExpired, TimeoutError):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None

    def _dockerd_pid(self) -> int | None:
        try:
            return int((self.base / "dockerd.pid").read_text().strip())
        except (OSError, ValueError):
            return None


def _wait_gone(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"process {pid} did not exit")
        time.sleep(0.05)
