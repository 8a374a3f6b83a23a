"""Attacks from inside a container, each contained: the cell fails or is stopped, the session keeps
working, other sessions and the engine are unaffected."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from pathlib import Path
from typing import Any

import docker
import pytest

import engine
from engine.core.session import Session
from engine.models import Outcome
from tests.conftest import not_on_gvisor, on_gvisor
from tests.docker.conftest import containers_of

pytestmark = pytest.mark.docker
INITIAL_PID_NAMESPACE = 0xEFFFFFFC  # the inode number of the host's pid namespace
ENGINE_SOURCE = str(Path(engine.__file__).parent)


async def assert_works(session: Session) -> None:
    result = await session.execute("6 * 7")
    assert result.result_text == "42", result


async def test_fork_bomb_is_contained(make_docker_session: Any) -> None:
    bomb, bystander = await make_docker_session(), await make_docker_session()
    await bystander.execute("kept = 'yes'")
    code = "import os\nwhile True:\n    os.fork()"
    result = await bomb.execute(code, timeout_s=3)
    assert result.outcome in (Outcome.ERROR, Outcome.KILLED)
    if result.outcome is Outcome.ERROR:
        assert result.error is not None and result.error.name == "BlockingIOError"
    assert (await bystander.execute("kept")).result_text == "'yes'"
    await assert_works(bomb)


async def test_memory_bomb_is_an_oom_kill_of_the_container_only(make_docker_session: Any) -> None:
    bomb, bystander = await make_docker_session(), await make_docker_session()
    await bystander.execute("kept = 'yes'")
    code = "chunks = []\nwhile True:\n    chunks.append(bytearray(10**7))"
    result = await bomb.execute(code, timeout_s=20)
    assert result.outcome is Outcome.CRASHED and not result.state_preserved
    assert result.error is not None and "ran out of memory" in result.error.value
    assert (await bystander.execute("kept")).result_text == "'yes'"
    await assert_works(bomb)


@pytest.mark.parametrize(
    ("code", "error"),
    [
        ("open('big', 'wb').write(b'x' * 64 * 2**20)", "OSError"),  # one file past the quota
        (
            "for i in range(100000):\n    with open(f'f{i}', 'wb') as f:\n        f.write(b'x' * 4096)",
            "OSError",
        ),  # many small files
        ("open('/tmp/big', 'wb').write(b'x' * 128 * 2**20)", "OSError"),  # the tmpfs /tmp
        ("open('/dev/shm/big', 'wb').write(b'x' * 64 * 2**20)", "OSError"),
        ("open('/big', 'wb')", "OSError"),  # the read-only root
    ],
)
async def test_disk_fill_is_refused(docker_session: Session, code: str, error: str) -> None:
    result = await docker_session.execute(code, timeout_s=20)
    assert result.outcome is Outcome.ERROR, result
    assert result.error is not None
    # gVisor checks the root's permissions before its read-only mount: EACCES, not EROFS.
    refused = {error, "PermissionError"} if on_gvisor(docker_session) else {error}
    assert result.error.name in refused, result.error
    await docker_session.execute(
        "import os, glob\nfor p in glob.glob('f*') + ['big']:\n"
        "    os.path.exists(p) and os.remove(p)"
    )
    await assert_works(docker_session)


async def test_no_network_not_even_the_hosts_loopback(docker_session: Session) -> None:
    # Listening on every host address and aiming at the default gateway (read the way
    # test_network_can_be_enabled_per_session does, where it connects): were the container on a
    # bridge, that connection would succeed, so this fails if networking were on. Without a
    # network there is no route, and 172.17.0.1 (docker0) is tried instead.
    server = socket.create_server(("0.0.0.0", 0))
    port = server.getsockname()[1]
    try:
        code = (
            "import socket\nresults = []\n"
            "routes = open('/proc/net/route').read().splitlines()[1:]\n"
            "gateway = next((r.split()[2] for r in routes if r.split()[1] == '00000000'), None)\n"
            "gateway = socket.inet_ntoa(int(gateway, 16).to_bytes(4, 'little')) if gateway"
            " else '172.17.0.1'\n"
            f"for host, port in [('127.0.0.1', {port}), (gateway, {port}), ('1.1.1.1', 53),"
            " ('8.8.8.8', 443)]:\n"
            "    try:\n"
            "        socket.create_connection((host, port), timeout=2).close()\n"
            "        results.append('connected')\n"
            "    except OSError as exc:\n"
            "        results.append(type(exc).__name__)\n"
            "results"
        )
        result = await docker_session.execute(code)
    finally:
        server.close()
    assert result.ok and result.result_text is not None
    assert "connected" not in result.result_text


@not_on_gvisor(
    "runsc is registered with --network=none (its netstack cannot start in the root network "
    "namespace here), so a network=True session has no network at all"
)
async def test_network_can_be_enabled_per_session(make_docker_session: Any) -> None:
    server = socket.create_server(("0.0.0.0", 0))
    port = server.getsockname()[1]
    server.setblocking(False)
    try:
        session = await make_docker_session(network=True)
        assert session.info().isolation.network_namespace is False
        code = (
            "import socket\n"
            "gateway = open('/proc/net/route').read().splitlines()[1].split()[2]\n"
            "host = socket.inet_ntoa(int(gateway, 16).to_bytes(4, 'little'))\n"
            f"socket.create_connection((host, {port}), timeout=5).close()\n'reached'"
        )
        result = await session.execute(code)
    finally:
        server.close()
    assert result.result_text == "'reached'", result


async def test_hosts_files_and_environment_are_invisible(
    docker_session: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = f"lci-secret-{uuid.uuid4().hex}"
    marker = tmp_path / "host-only.txt"
    marker.write_text(secret)
    monkeypatch.setenv("LCI_TEST_SECRET", secret)
    code = (
        "import os, glob\nfound = []\n"
        f"found += [p for p in [{str(marker)!r}, {ENGINE_SOURCE!r}, '/var/run/docker.sock',"
        " '/run/docker.sock', '/root/.bash_history'] if os.path.exists(p)]\n"
        "for path in glob.glob('/proc/*/environ'):\n"
        "    try:\n"
        f"        found += [path] if {secret!r}.encode() in open(path, 'rb').read() else []\n"
        "    except OSError:\n"
        "        pass\n"
        f"found += ['env'] if {secret!r} in str(os.environ) else []\n"
        "found"
    )
    result = await docker_session.execute(code)
    assert result.result_text == "[]", result


@pytest.mark.parametrize(
    "path",
    [
        "/etc/passwd",
        "/usr/lib/python3/dist-packages/evil.py",
        "/opt/lci-agent/lci_agent/kernel.py",
        "/root/x",
        "/home/sandbox/x",
    ],
)
async def test_writing_outside_the_workdir_fails(docker_session: Session, path: str) -> None:
    result = await docker_session.execute(f"open({path!r}, 'a').write('x')")
    assert result.outcome is Outcome.ERROR
    assert result.error is not None and result.error.name in (
        "OSError",
        "PermissionError",
        "FileNotFoundError",
    )
    await assert_works(docker_session)


async def test_killing_pid_1_and_every_visible_process(make_docker_session: Any) -> None:
    attacker, bystander = await make_docker_session(), await make_docker_session()
    await bystander.execute("kept = 'yes'")
    # SIGKILL to the namespace's init from inside is ignored by the kernel; kill(-1) hits only
    # the container's own processes.
    result = await attacker.execute("import os, signal\nos.kill(1, signal.SIGKILL)\n'alive'")
    if on_gvisor(attacker):
        # gVisor's kernel lets the cell kill its init: its own container ends, and restarts.
        assert result.outcome is Outcome.CRASHED, result
    else:
        assert result.result_text == "'alive'"
    result = await attacker.execute("import os, signal\nos.kill(-1, signal.SIGKILL)\n'alive'")
    assert result.outcome in (Outcome.COMPLETED, Outcome.ERROR)  # ESRCH: nothing else to kill
    # SIGTERM to init is forwarded to the agent, which dies: a crash, then a fresh container.
    result = await attacker.execute(
        "import os, signal\nos.kill(1, signal.SIGTERM)\nimport time\ntime.sleep(10)"
    )
    assert result.outcome is Outcome.CRASHED
    await assert_works(attacker)
    assert (await bystander.execute("kept")).result_text == "'yes'"


async def test_signals_cannot_reach_other_sessions(
    make_docker_session: Any, docker_client: docker.DockerClient
) -> None:
    attacker, victim = await make_docker_session(), await make_docker_session()
    await victim.execute("kept = 'yes'")
    [container] = containers_of(docker_client, victim)
    host_pid = container.attrs["State"]["Pid"]  # the victim's init, as the host numbers it
    # The engine's own pid too, where it is the host's number (not in a pid namespace of its own,
    # where it is small and names one of the attacker's own processes).
    own = [os.getpid()] if os.stat("/proc/self/ns/pid").st_ino == INITIAL_PID_NAMESPACE else []
    code = (
        "import os, signal\nresults = []\n"
        f"for pid in {(host_pid, host_pid + 1, *own)}:\n"
        "    try:\n"
        "        os.kill(pid, signal.SIGKILL)\n"
        "        results.append('sent')\n"
        "    except OSError as exc:\n"
        "        results.append(type(exc).__name__)\n"
        "results"
    )
    result = await attacker.execute(code)
    assert result.result_text is not None and "sent" not in result.result_text
    assert (await victim.execute("kept")).result_text == "'yes'"


async def test_setsid_daemon_does_not_survive_the_kill(make_docker_session: Any) -> None:
    # A large CPU allowance, so that only the ladder's own signals reach the cells.
    docker_session = await make_docker_session(cpu_s=100)
    daemon = (
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        while True:\n"
        "            with open('/workspace/beat', 'a') as f:\n"
        "                f.write('.')\n"
        "            time.sleep(0.05)\n"
        "    os._exit(0)\n"
        "time.sleep(0.5)\n"
    )
    await docker_session.execute(daemon)
    # An interrupt keeps state, and the daemon with it ...
    stuck = await docker_session.execute(
        "import time\nwhile True:\n    time.sleep(0.01)", timeout_s=1
    )
    assert stuck.outcome is Outcome.INTERRUPTED
    size = len(await docker_session.read_file("beat"))
    await asyncio.sleep(0.3)
    assert len(await docker_session.read_file("beat")) > size
    # ... but an unstoppable cell takes the whole container down, daemon included.
    unstoppable = (
        "import time\nwhile True:\n    try:\n        time.sleep(0.01)\n"
        "    except BaseException:\n        pass"
    )
    killed = await docker_session.execute(unstoppable, timeout_s=1)
    assert killed.outcome is Outcome.KILLED and not killed.state_preserved
    size = len(await docker_session.read_file("beat"))  # the workdir survives the restart
    await asyncio.sleep(0.5)
    assert len(await docker_session.read_file("beat")) == size
    await assert_works(docker_session)
