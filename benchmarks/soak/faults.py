"""Faults the soak injects into a running server, one every few seconds, chosen at random.

    kill_sandbox    SIGKILL a random process of a session's sandbox (subprocess backend)
    kill_zygote     SIGKILL the fork server's zygote (subprocess backend)
    docker_kill     `docker kill` a random session's sandbox container (docker backend)
    daemon_restart  restart the Docker daemon (docker backend, on the soak's private daemon only)
    disk_full       fill the state dir's filesystem for a few seconds (a private tmpfs)
    upstream_drop   the model server cuts its next stream after the first event
    upstream_hang   the model server goes silent in its next round
    slow_client     a client that reads a streamed response one byte a second, then leaves
    vanish          a client that starts a long streamed execution and disconnects

Each injector returns a line saying what it did (or that it found nothing to do).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from benchmarks.soak.daemon import PrivateDaemon
from benchmarks.soak.model import SoakModel
from benchmarks.soak.resources import owner_tag

DISK_FULL_S = 3.0
SLOW_CLIENT_S = 5.0


@dataclass
class Target:
    server_pid: int
    host: str
    port: int
    backend: str
    state_dir: Path
    model: SoakModel
    rng: random.Random
    daemon: PrivateDaemon | None = None  # the soak's own Docker daemon, if it has one
    stuck_sessions: int = 0  # sessions still busy long after their client vanished
    unannounced_losses: int = 0  # sessions that lost their files and did not say so

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


Fault = Callable[[Target], Awaitable[str]]


def _zygote(target: Target) -> psutil.Process | None:
    """The fork server's zygote: the server's direct child running zygote.py (the sandboxes it
    forks inherit its command line, so only the parent link tells them apart)."""
    for process in psutil.Process(target.server_pid).children():
        with contextlib.suppress(psutil.Error):
            if "zygote.py" in " ".join(process.cmdline()):
                return process
    return None


def _sandbox_processes(target: Target) -> list[psutil.Process]:
    zygote = _zygote(target)
    return [
        p
        for p in psutil.Process(target.server_pid).children(recursive=True)
        if zygote is None or p.pid != zygote.pid
    ]


async def kill_sandbox(target: Target) -> str:
    candidates = _sandbox_processes(target)
    if not candidates:
        return "kill_sandbox: no sandbox process"
    victim = target.rng.choice(candidates)
    with contextlib.suppress(ProcessLookupError):
        os.kill(victim.pid, signal.SIGKILL)
    return f"kill_sandbox: SIGKILL {victim.pid}"


async def kill_zygote(target: Target) -> str:
    zygote = _zygote(target)
    if zygote is None:
        return "kill_zygote: no zygote running"
    with contextlib.suppress(ProcessLookupError):
        os.kill(zygote.pid, signal.SIGKILL)
    return f"kill_zygote: SIGKILL {zygote.pid}"


async def docker_kill(target: Target) -> str:
    """`docker kill` a session's sandbox container. The keeper that holds a session's workdir
    volume is left alone: it is the workdir's storage, not its sandbox (killing it loses the files,
    as pulling a disk would)."""
    label = f"label=lci.owner={owner_tag(target.server_pid)}"
    listed = await asyncio.to_thread(
        subprocess.run,
        ["docker", "ps", "--filter", label, "--format", '{{.ID}} {{.Label "lci.role"}}'],
        capture_output=True,
        text=True,
        check=False,
    )
    ids = [line.split()[0] for line in listed.stdout.splitlines() if line.split()[1:] != ["keeper"]]
    if not ids:
        return "docker_kill: no container"
    victim = target.rng.choice(ids)
    await asyncio.to_thread(
        subprocess.run, ["docker", "kill", victim], capture_output=True, check=False
    )
    return f"docker_kill: {victim}"


async def daemon_restart(target: Target) -> str:
    """Restart the Docker daemon: every container stops, keepers included, so every session's
    files are gone. A probe session made before must then say it is lost (410), not carry on as
    if its files were there; the clients' sessions are checked by the clients."""
    if target.daemon is None:
        return "daemon_restart: no private daemon (restarting the host's would disturb others)"
    async with httpx.AsyncClient(base_url=target.url, timeout=60) as http:
        created = await http.post("/v1/sessions", json={})
        probe = created.json()["id"] if created.status_code == 201 else None
        started = asyncio.get_running_loop().time()
        await asyncio.to_thread(target.daemon.restart)
        line = f"daemon_restart: back after {asyncio.get_running_loop().time() - started:.1f} s"
        if probe is None:
            return f"{line}; no probe session ({created.status_code})"
        try:
            answer = await http.post(f"/v1/sessions/{probe}/execute", json={"code": "1"})
        finally:
            with contextlib.suppress(httpx.HTTPError):
                await http.delete(f"/v1/sessions/{probe}")
    if answer.status_code != 410:
        target.unannounced_losses += 1
    return f"{line}; a session from before answered {answer.status_code}"


async def disk_full(target: Target) -> str:
    filler = target.state_dir / ".soak-filler"
    written = await asyncio.to_thread(_fill, filler)
    try:
        await asyncio.sleep(DISK_FULL_S)
    finally:
        with contextlib.suppress(OSError):
            filler.unlink()
    return f"disk_full: {written >> 20} MiB for {DISK_FULL_S:g} s"


def _fill(path: Path) -> int:
    written = 0
    chunk = b"\0" * (1 << 20)
    with contextlib.suppress(OSError), path.open("wb") as handle:
        while True:
            handle.write(chunk)
            handle.flush()
            written += len(chunk)
    return written


async def upstream_drop(target: Target) -> str:
    target.model.inject("drop")
    return "upstream_drop: the next round's stream is cut"


async def upstream_hang(target: Target) -> str:
    target.model.inject("hang")
    return "upstream_hang: the next round goes silent"


async def slow_client(target: Target) -> str:
    body = json.dumps(
        {
            "model": "fake-model",
            "input": "What is 6 times 7?",
            "tools": [{"type": "code_interpreter", "container": {"type": "auto"}}],
            "stream": True,
        }
    ).encode()
    reader, writer = await asyncio.open_connection(target.host, target.port)
    writer.write(
        b"POST /v1/responses HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (target.host.encode(), len(body), body)
    )
    await writer.drain()
    read = 0
    try:
        for _ in range(int(SLOW_CLIENT_S)):
            data = await asyncio.wait_for(reader.read(1), 5)
            if not data:
                break
            read += 1
            await asyncio.sleep(1)
    except TimeoutError:
        pass
    finally:
        writer.close()
    return f"slow_client: read {read} bytes at 1 byte/s, then left"


async def vanish(target: Target) -> str:
    async with httpx.AsyncClient(base_url=target.url, timeout=30) as http:
        created = await http.post("/v1/sessions", json={})
        if created.status_code != 201:
            return f"vanish: no session ({created.status_code})"
        session_id = created.json()["id"]
        try:
            await _start_and_drop(http, session_id)
            return await _wait_idle(http, session_id, target)
        finally:
            with contextlib.suppress(httpx.HTTPError):
                await http.delete(f"/v1/sessions/{session_id}")


async def _start_and_drop(http: httpx.AsyncClient, session_id: str) -> None:
    body = {"code": "import time\nprint('start', flush=True)\ntime.sleep(30)", "stream": True}
    with contextlib.suppress(TimeoutError, httpx.HTTPError):
        async with asyncio.timeout(5):
            url = f"/v1/sessions/{session_id}/execute"
            async with http.stream("POST", url, json=body) as response:
                async for line in response.aiter_lines():
                    if "start" in line:
                        break  # leaving the block closes the connection mid-stream


async def _wait_idle(http: httpx.AsyncClient, session_id: str, target: Target) -> str:
    """The server must stop the execution of a client that left: the session is idle again
    within seconds, not after the cell's 30 s."""
    for _ in range(50):
        info = await http.get(f"/v1/sessions/{session_id}")
        if info.status_code == 200 and info.json()["state"] == "idle":
            return "vanish: the execution stopped when its client left"
        await asyncio.sleep(0.2)
    target.stuck_sessions += 1
    return "vanish: the session was still busy 10 s after its client left"


FAULTS: dict[str, Fault] = {
    "kill_sandbox": kill_sandbox,
    "kill_zygote": kill_zygote,
    "docker_kill": docker_kill,
    "daemon_restart": daemon_restart,
    "disk_full": disk_full,
    "upstream_drop": upstream_drop,
    "upstream_hang": upstream_hang,
    "slow_client": slow_client,
    "vanish": vanish,
}
BACKEND_FAULTS = {
    "subprocess": ["kill_sandbox", "kill_zygote"],
    "docker": ["docker_kill"],
}
COMMON_FAULTS = ["disk_full", "upstream_drop", "upstream_hang", "slow_client", "vanish"]


def faults_for(backend: str, private_daemon: bool = False) -> list[str]:
    restart = ["daemon_restart"] if private_daemon and backend == "docker" else []
    return [*BACKEND_FAULTS[backend], *restart, *COMMON_FAULTS]
