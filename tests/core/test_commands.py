"""Commands beside the interpreter, on both backends: they run in the session's sandbox (same user,
cgroup, namespaces, working directory), stream and keep their output within the session's limit,
take stdin, signals and a terminal, and every bad one (a flood, a fork bomb, one that never ends or
waits on stdin forever) is bounded and cleaned up like a cell."""

from __future__ import annotations

import asyncio
import os
import signal

import psutil
import pytest

from engine.command_models import CommandRequest, PtySize
from engine.core.commands import CommandEnd, CommandOutput
from engine.core.session import Session
from engine.errors import BadParameter, CommandNotFound, CommandStartFailed
from engine.models import BackendName
from tests.conftest import TEST_LIMITS, SessionFactory


def command(cmd: str, **options: object) -> CommandRequest:
    return CommandRequest(cmd=cmd, **options)  # type: ignore[arg-type]


async def test_a_command_runs_in_the_sessions_sandbox(session: Session) -> None:
    kernel = await session.execute(
        "import os\nprint(os.getuid(), os.getcwd(), open('/proc/self/cgroup').read().strip())"
    )
    result = await session.commands.run(
        command("echo $(id -u) $(pwd) $(cat /proc/self/cgroup); echo oops >&2; exit 3")
    )
    assert result.exit_code == 3
    assert result.stderr == "oops\n"
    assert result.stdout.split() == kernel.stdout.split()  # uid, workdir and cgroup all shared


async def test_files_and_tmp_are_shared_with_the_interpreter(session: Session) -> None:
    await session.execute(
        "open('from_cell.txt', 'w').write('cell')\nopen('/tmp/t', 'w').write('tmp')"
    )
    result = await session.commands.run(
        command("cat from_cell.txt /tmp/t && echo cmd > from_cmd.txt")
    )
    assert result.stdout == "celltmp"
    cell = await session.execute("open('from_cmd.txt').read()")
    assert cell.result_text == "'cmd\\n'"


async def test_program_with_args_env_and_cwd(session: Session) -> None:
    await session.execute("import os\nos.makedirs('sub', exist_ok=True)")
    result = await session.commands.run(
        command(
            "/bin/sh",
            args=["-c", 'echo "$GREETING" && pwd', "x"],
            env={"GREETING": "a b"},
            cwd="sub",
        )
    )
    assert result.exit_code == 0, result
    assert result.stdout.splitlines()[0] == "a b"
    assert result.stdout.splitlines()[1].endswith("/sub")
    with pytest.raises(CommandStartFailed, match="no such program"):
        await session.commands.run(command("no-such-program-here", args=[]))
    with pytest.raises(CommandStartFailed, match="does not exist"):
        await session.commands.run(command("true", cwd="nowhere"))
    assert (await session.commands.run(command("no-such-program-here"))).exit_code == 127


async def test_background_command_with_stdin_tag_and_signal(session: Session) -> None:
    cat = await session.commands.start(command("cat", stdin=True, background=True, tag="echo"))
    assert session.commands.find(tag="echo") is cat
    assert session.commands.find(pid=cat.pid) is cat
    assert [c.id for c in session.commands.list()] == [cat.id]
    events = cat.events()
    cat.send_stdin(b"hello\n")
    first = await asyncio.wait_for(anext(events), 10)
    assert first == CommandOutput("stdout", b"hello\n")
    cat.close_stdin()
    result = await asyncio.wait_for(cat.wait(), 10)
    assert result.exit_code == 0 and result.stdout == "hello\n"
    assert session.commands.list() == []

    sleeper = await session.commands.start(command("sleep 60", background=True))
    sleeper.signal(signal.SIGTERM)
    ended = await asyncio.wait_for(sleeper.wait(), 10)
    assert ended.exit_code == -signal.SIGTERM
    with pytest.raises(CommandNotFound):
        sleeper.signal(signal.SIGKILL)
    with pytest.raises(BadParameter):
        (await session.commands.start(command("sleep 5", background=True))).send_stdin(b"x")


async def test_a_command_that_never_ends_or_waits_on_stdin_is_killed_at_its_timeout(
    session: Session,
) -> None:
    for cmd, options in (("sleep 60", {}), ("cat", {"stdin": True})):
        result = await session.commands.run(command(cmd, timeout_s=0.5, **options))
        assert result.timed_out and result.exit_code == -signal.SIGKILL, result
    default = await session.commands.start(command("sleep 60"))
    assert default._deadline is not None  # the session's own timeout applies by default
    default.signal()


async def test_a_flood_of_output_is_bounded(session: Session) -> None:
    result = await session.commands.run(command("yes 0123456789 | head -c 20000000; echo done >&2"))
    assert result.truncated
    assert len(result.stdout) + len(result.stderr) <= TEST_LIMITS.output_bytes
    assert (await session.execute("1 + 1")).result_text == "2"


async def test_a_fork_bomb_in_a_command_is_contained(session: Session) -> None:
    bomb = await session.commands.run(command(":(){ :|:& };:", timeout_s=2))
    assert bomb.exit_code is not None or bomb.timed_out
    # Its first bash may exit at once, its copies go on: the deadline ends all of them.
    await asyncio.sleep(2.5)
    after = await session.commands.run(command("echo alive"))
    assert after.stdout == "alive\n"
    assert (await session.execute("21 * 2")).result_text == "42"


async def test_a_terminal_with_size_input_and_resize(session: Session) -> None:
    shell = await session.commands.start(
        command("/bin/bash", args=["--norc", "-i"], pty=PtySize(cols=100, rows=30))
    )
    events = shell.events()
    shell.send_stdin(b"stty size; tty\n")
    seen = b""
    while b"30 100" not in seen or b"/dev/pts/" not in seen:
        event = await asyncio.wait_for(anext(events), 10)
        assert isinstance(event, CommandOutput) and event.name == "pty"
        seen += event.data
    shell.resize(PtySize(cols=120, rows=40))
    shell.send_stdin(b"stty size\n")
    while b"40 120" not in seen:
        event = await asyncio.wait_for(anext(events), 10)
        assert isinstance(event, CommandOutput)
        seen += event.data
    shell.send_stdin(b"exit 7\n")
    assert (await asyncio.wait_for(shell.wait(), 10)).exit_code == 7


async def test_commands_end_with_the_sandbox_and_the_next_one_starts_a_new_service(
    make_session: SessionFactory,
) -> None:
    session = await make_session(timeout_s=1)
    sleeper = await session.commands.start(command("sleep 60", background=True))
    killed = await session.execute("while True: pass", timeout_s=0.5)  # the ladder restarts it
    assert killed.outcome.value in ("interrupted", "killed")
    await session.restart()
    end = await asyncio.wait_for(sleeper.wait(), 15)
    assert end.exit_code is None and "stopped" in (end.error or "")
    assert (await session.commands.run(command("echo again"))).stdout == "again\n"
    last = await session.commands.start(command("sleep 60", background=True))
    await session.close()
    assert isinstance(await asyncio.wait_for(anext(last.events()), 10), CommandEnd)


async def test_no_network_without_the_sessions_network(session: Session) -> None:
    probe = "import socket; socket.create_connection(('1.1.1.1', 53), timeout=2)"
    result = await session.commands.run(command("python3", args=["-c", probe]))
    assert result.exit_code not in (0, None), result


COUNT_SLEEPERS = (
    "import os\n"
    "print(sum(1 for p in os.listdir('/proc') if p.isdigit()"
    " and open(f'/proc/{p}/cmdline', 'rb').read().startswith(b'sleep\\0')))"
)


async def test_children_left_behind_stay_in_the_sandbox_and_end_with_it(
    session: Session, backend: BackendName
) -> None:
    result = await session.commands.run("(sleep 300 &); echo started")
    assert result.stdout == "started\n" and result.exit_code == 0
    seen = await session.commands.run("python3", args=["-c", COUNT_SLEEPERS])
    assert seen.stdout.strip() == "1"  # the orphan lives on in the sandbox, like a cell's would
    uid = int((await session.execute("import os\nos.getuid()")).result_text or "0")
    await session.close()
    if backend is BackendName.SUBPROCESS and uid != os.getuid():
        await asyncio.sleep(0.5)
        left = [p for p in psutil.process_iter(["uids"]) if p.info["uids"].real == uid]
        assert left == [], left  # nothing of the session outlives it on the host


async def test_events_with_replay_start_with_what_was_written_so_far(session: Session) -> None:
    cmd = await session.commands.start(
        command("printf a; printf e >&2; sleep 1; printf b", background=True)
    )
    while not (cmd.output["stdout"] and cmd.output["stderr"]):
        await asyncio.sleep(0.05)
    seen = [event async for event in cmd.events(replay=True)]
    assert seen[:2] == [CommandOutput("stdout", b"a"), CommandOutput("stderr", b"e")]
    assert seen[2:] == [CommandOutput("stdout", b"b"), CommandEnd(0)]
    after = [event async for event in cmd.events(replay=True)]
    assert after == [CommandOutput("stdout", b"ab"), CommandOutput("stderr", b"e"), CommandEnd(0)]
    assert [event async for event in cmd.events()] == [CommandEnd(0)]


async def test_a_command_runs_in_a_sandbox_with_network(make_session: SessionFactory) -> None:
    """With a network the subprocess launcher has a slirp4netns child beside the sandbox's init:
    the process service must join the sandbox, not it."""
    session = await make_session(network=True)
    kernel = await session.execute("import os\nprint(os.getuid(), os.getcwd())")
    result = await session.commands.run(command("echo $(id -u) $(pwd); ls /dev/null"))
    assert result.exit_code == 0, result
    assert result.stdout.split()[:2] == kernel.stdout.split()


async def test_a_foreground_deadline_ends_what_the_command_left_running(session: Session) -> None:
    async def sleepers() -> str:
        return (await session.commands.run("python3", args=["-c", COUNT_SLEEPERS])).stdout.strip()

    left = await session.commands.run("(sleep 300 &); echo started", timeout_s=1)
    assert left.exit_code == 0 and not left.timed_out
    assert await sleepers() == "1"
    await asyncio.sleep(1.5)
    assert await sleepers() == "0"  # killed at the deadline with its process group
    kept = await session.commands.run("(sleep 300 &)", timeout_s=1, background=True)
    assert kept.exit_code == 0
    await asyncio.sleep(1.5)
    assert await sleepers() == "1"  # a background command's leftovers live on, as with envd
