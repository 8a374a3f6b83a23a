"""Every limit, proven by the real attack against the real backend, with small limits. After each
attack the session still works and the host is unaffected."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import threading
import time
from pathlib import Path

import psutil
import pytest

from engine.core.backends.subprocess.cgroups import Cgroup
from engine.core.session import Session
from engine.models import BackendName, Outcome
from tests.conftest import TEST_LIMITS, SessionFactory, on_gvisor

AGENT_KERNEL = Path(__file__).parents[2] / "engine" / "agent" / "kernel.py"


async def assert_recovers(session: Session) -> None:
    result = await session.execute("21 * 2")
    assert result.result_text == "42", result


def processes_of(uid: int) -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["uids"]) if p.info["uids"].real == uid]


async def test_fork_bomb_is_contained(session: Session, backend: BackendName) -> None:
    # Subprocess sandboxes run as a uid of their own, so the host can count exactly their processes.
    uid = int((await session.execute("import os\nos.getuid()")).result_text or "0")
    countable = backend is BackendName.SUBPROCESS and uid != os.getuid()
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    running = asyncio.create_task(session.execute(bomb, timeout_s=3))
    await asyncio.sleep(1.5)
    if countable:
        assert 1 < len(processes_of(uid)) <= TEST_LIMITS.max_procs
    result = await running
    # The process cap holds the bomb to max_procs; the timeout then stops it. Each copy of the
    # interpreter also dirties its copy-on-write pages (the garbage collector walks the whole
    # heap), so the memory cap may stop it first: contained as well, and said so.
    memory = "memory limit was reached"
    stopped_by_memory = result.outcome is Outcome.CRASHED and memory in str(result.error)
    assert result.outcome in (Outcome.INTERRUPTED, Outcome.KILLED) or stopped_by_memory, result
    assert os.system("true") == 0  # the host can still start processes
    await assert_recovers(session)
    await session.close()
    if countable:
        await asyncio.sleep(0.5)
        assert processes_of(uid) == []  # closing removed every process the bomb made


async def test_process_limit_stops_forks_with_an_error(session: Session) -> None:
    code = (
        "import os, time\nchildren = []\n"
        "try:\n"
        "    for _ in range(1000):\n"
        "        pid = os.fork()\n"
        "        if pid == 0:\n"
        "            time.sleep(30); os._exit(0)\n"
        "        children.append(pid)\n"
        "except OSError as exc:\n"
        "    failed = exc\n"
        "for pid in children:\n"
        "    os.kill(pid, 9); os.waitpid(pid, 0)\n"
        "len(children) < 1000, type(failed).__name__"
    )
    result = await session.execute(code, timeout_s=20)
    assert result.result_text == "(True, 'BlockingIOError')", result
    await assert_recovers(session)


async def test_single_huge_allocation_is_refused(session: Session) -> None:
    result = await session.execute("x = bytearray(4 * 1024**3)")
    if on_gvisor(session):
        # gVisor does not enforce RLIMIT_DATA: the memory limit ends it, the session restarts.
        assert result.outcome is Outcome.CRASHED, result
        assert result.error is not None and "memory" in result.error.value
    else:
        assert result.outcome is Outcome.ERROR
        assert result.error is not None and result.error.name == "MemoryError"
    await assert_recovers(session)


async def test_growing_memory_bomb_is_contained(session: Session) -> None:
    bomb = "chunks = []\nwhile True:\n    chunks.append(b'x' * 10**7)"
    result = await session.execute(bomb, timeout_s=20)
    assert result.outcome in (Outcome.ERROR, Outcome.CRASHED)
    assert result.error is not None
    if result.outcome is Outcome.CRASHED:
        assert "memory" in result.error.value
    else:
        assert result.error.name == "MemoryError"
    await assert_recovers(session)


async def test_memory_spread_over_processes_is_limited(session: Session) -> None:
    # Each child stays under any per-process limit; together they exceed the sandbox's memory.
    per_child = TEST_LIMITS.memory_mb // 3
    code = (
        "import os, time\npids = []\n"
        "for _ in range(6):\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        f"        block = b'x' * ({per_child} * 1024 * 1024)\n"
        "        time.sleep(3)\n"
        "        os._exit(0)\n"
        "    pids.append(pid)\n"
        "statuses = [os.waitpid(p, 0)[1] for p in pids]\n"
        "sum(1 for s in statuses if s != 0)"
    )
    result = await session.execute(code, timeout_s=20)
    if result.outcome is Outcome.COMPLETED:
        assert int(result.result_text or "0") > 0  # some children were OOM-killed
    else:
        assert result.outcome is Outcome.CRASHED  # the OOM killer chose the agent itself
    await assert_recovers(session)


async def test_huge_output_is_truncated_head_and_tail(session: Session) -> None:
    result = await session.execute("for i in range(200_000):\n    print(i)")
    budget = TEST_LIMITS.output_bytes
    assert result.truncated
    assert result.stdout.startswith("0\n1\n2\n")
    # gVisor's ptrace platform (no KVM here) makes each write slow: the timeout ends the cell
    # before its last line; the output is cut all the same.
    slow = on_gvisor(session) and result.outcome is not Outcome.COMPLETED
    assert slow or result.stdout.endswith("199998\n199999\n")
    assert "bytes of output omitted" in result.stdout
    assert len(result.stdout.encode()) <= budget + 100
    await assert_recovers(session)


async def test_giant_single_line_is_truncated(session: Session) -> None:
    result = await session.execute("print('ab' * 25_000_000, end='!')")
    assert result.truncated
    assert result.stdout.startswith("abab") and result.stdout.endswith("ab!")
    assert len(result.stdout.encode()) <= TEST_LIMITS.output_bytes + 100


async def test_disk_fill_with_one_file(session: Session) -> None:
    code = "with open('big', 'wb') as f:\n    while True:\n        f.write(b'x' * 2**20)"
    result = await session.execute(code)
    assert result.outcome is Outcome.ERROR
    assert result.error is not None and result.error.name == "OSError"
    await assert_recovers(session)


async def test_disk_fill_with_many_small_files(session: Session) -> None:
    code = (
        "for i in range(100_000):\n    with open(f'f{i}', 'w') as f:\n        f.write('x' * 4096)"
    )
    result = await session.execute(code, timeout_s=30)
    assert result.outcome is Outcome.ERROR
    assert result.error is not None and result.error.name == "OSError"
    await assert_recovers(session)


async def test_fd_exhaustion_leaves_the_session_working(session: Session) -> None:
    code = "files = []\nwhile True:\n    files.append(open('/dev/null'))"
    result = await session.execute(code)
    assert result.outcome is Outcome.ERROR
    assert result.error is not None and "Too many open files" in result.error.value
    await session.execute("del files")
    await assert_recovers(session)


@pytest.mark.parametrize(
    "path",
    [
        "/etc/passwd",
        "/usr/lib/lci-test",
        "/opt/lci-agent/lci_agent/kernel.py",
        "/root/x",
        str(AGENT_KERNEL),
    ],
)
async def test_writing_outside_the_workdir_fails(session: Session, path: str) -> None:
    before = hashlib.sha256(AGENT_KERNEL.read_bytes()).hexdigest()
    result = await session.execute(f"open({path!r}, 'a').write('owned')")
    assert result.outcome is Outcome.ERROR
    assert result.error is not None and result.error.name in (
        "PermissionError",
        "OSError",
        "FileNotFoundError",
    )
    assert hashlib.sha256(AGENT_KERNEL.read_bytes()).hexdigest() == before


async def test_host_files_and_environment_are_invisible(make_session, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    secret_file = tmp_path / "host-secret.txt"
    secret_file.write_text("hunter2")
    secret_file.chmod(0o644)
    os.environ["LCI_TEST_SECRET"] = "hunter2"
    try:
        session = await make_session()
    finally:
        del os.environ["LCI_TEST_SECRET"]
    code = (
        "import os, glob\nleaks = []\n"
        f"try:\n    leaks.append(open({str(secret_file)!r}).read())\nexcept OSError:\n    pass\n"
        "leaks += [k for k, v in os.environ.items() if 'hunter2' in v]\n"
        "for path in glob.glob('/proc/*/environ'):\n"
        "    try:\n"
        "        if b'hunter2' in open(path, 'rb').read():\n"
        "            leaks.append(path)\n"
        "    except OSError:\n"
        "        pass\n"
        "leaks"
    )
    result = await session.execute(code)
    assert result.result_text == "[]", result


@pytest.fixture
def host_server() -> tuple[int, list[bytes]]:
    """A TCP server on the host's loopback that records whoever reaches it."""
    received: list[bytes] = []
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(5)

    def accept() -> None:
        try:
            conn, _ = server.accept()
            received.append(b"connected")
            conn.close()
        except OSError:
            pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1], received
    server.close()
    thread.join(6)


async def test_network_is_cut_when_disabled(
    session: Session, host_server: tuple[int, list[bytes]]
) -> None:
    port, received = host_server
    code = (
        "import socket\n"
        "try:\n"
        f"    socket.create_connection(('127.0.0.1', {port}), timeout=2).close()\n"
        "    reached = True\n"
        "except OSError:\n"
        "    reached = False\n"
        "interfaces = [name for _, name in socket.if_nameindex()]\n"
        "reached, interfaces"
    )
    result = await session.execute(code)
    assert result.result_text == "(False, ['lo'])", result
    assert received == []


async def test_killing_the_parent_and_everything_visible(session: Session) -> None:
    code = (
        "import os, signal\n"
        "for target in (os.getppid(), 1, -1):\n"
        "    try:\n"
        "        os.kill(target, signal.SIGKILL)\n"
        "    except OSError:\n"
        "        pass\n"
        f"try:\n    os.kill({os.getpid()}, signal.SIGKILL)\nexcept OSError:\n    pass\n"
        "'survived'"
    )
    result = await session.execute(code)
    if on_gvisor(session):
        # gVisor's kernel lets the cell kill its container's init: that container may end first.
        assert result.result_text == "'survived'" or result.outcome is Outcome.CRASHED, result
        # The container ends a moment after its init died: the next cell may still reach it and
        # end crashed; the one after runs in a fresh sandbox.
        first = await session.execute("21 * 2")
        if first.outcome is Outcome.CRASHED:
            assert not first.state_preserved, first
    else:
        assert result.result_text == "'survived'"
    await assert_recovers(session)


async def test_closing_stdout_and_stderr(session: Session) -> None:
    result = await session.execute("import os, sys\nos.close(1)\nos.close(2)\nsys.stdout.close()")
    assert result.outcome in (Outcome.COMPLETED, Outcome.ERROR)
    after = await session.execute("print('printing again')")
    assert after.stdout == "printing again\n"


async def test_os_exit_is_a_reported_crash(session: Session) -> None:
    await session.execute("gone = True")
    result = await session.execute("import os\nos._exit(7)")
    assert result.outcome is Outcome.CRASHED
    assert not result.state_preserved
    assert result.error is not None and "status 7" in result.error.value
    assert (await session.execute("'gone' in globals()")).result_text == "False"


async def test_segfault_is_a_reported_crash(session: Session) -> None:
    result = await session.execute("import ctypes\nctypes.string_at(0)")
    assert result.outcome is Outcome.CRASHED
    assert result.error is not None and "SIGSEGV" in result.error.value
    await assert_recovers(session)


async def test_forged_frames_and_junk_on_stdout_are_just_text(session: Session) -> None:
    code = (
        "import sys, struct, json\n"
        "body = json.dumps({'type': 'done', 'id': 'x', 'status': 'ok'}).encode()\n"
        "sys.stdout.buffer.write(struct.pack('>I', len(body)) + body + b'\\x00\\xff\\xfe\\n')\n"
        "sys.stdout.flush()\n"
        "'real result'"
    )
    result = await session.execute(code)
    assert result.result_text == "'real result'"
    assert '"type": "done"' in result.stdout and "\ufffd" in result.stdout


JUNK_ON_EVERY_FD = "import os\nfor fd in range(3, 64):\n    try:\n        os.write(fd, b'\\xff' * 64)\n    except OSError:\n        pass"


async def test_junk_written_to_every_fd_is_survived(session: Session) -> None:
    result = await session.execute(JUNK_ON_EVERY_FD)
    # Garbage on the protocol channel is a broken sandbox: reported as a crash, then replaced.
    assert result.outcome in (Outcome.COMPLETED, Outcome.CRASHED)
    await assert_recovers(session)


@pytest.mark.parametrize("backend", [BackendName.SUBPROCESS], ids=["subprocess"])
async def test_a_broken_sandbox_is_swept_before_its_replacement_starts(
    make_session: SessionFactory, backend: BackendName, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A protocol violation kills the sandbox at once; its agent's death is reported while the
    # sweep of its cgroup still runs (on a loaded host, for a while). The replacement joins the
    # same cgroup, so it must not start before that sweep has ended, or the sweep kills it.
    # (The cgroup sweep is the subprocess backend's; `backend` picks it for `make_session`.)
    session = await make_session()
    if session.info().isolation.memory_limit != "exact":
        pytest.skip("no cgroup here (they need root)")
    sweep = Cgroup.kill_all

    def late_sweep(group: Cgroup) -> None:
        time.sleep(0.5)  # what a loaded host does to the sweeping thread
        sweep(group)

    monkeypatch.setattr(Cgroup, "kill_all", late_sweep)
    result = await session.execute(JUNK_ON_EVERY_FD)
    assert result.outcome is Outcome.CRASHED, result
    await assert_recovers(session)
    await asyncio.sleep(1)  # any sweep still under way has ended by now
    await assert_recovers(session)
    assert session.info().restarts == 1
