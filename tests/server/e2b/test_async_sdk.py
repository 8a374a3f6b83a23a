"""The async flavour of E2B's SDK (`AsyncSandbox`, unchanged) against a real `lci serve`."""

from __future__ import annotations

import asyncio
import base64

import pytest
from e2b import CommandExitException, SandboxException
from e2b.sandbox.commands.command_handle import PtySize
from e2b_code_interpreter import AsyncSandbox, OutputMessage

from tests.server.helpers import LciServer

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


async def test_async_sandbox_end_to_end(e2b_env: LciServer) -> None:
    sandbox = await AsyncSandbox.create()
    try:
        assert (await sandbox.run_code("x = 20")).error is None
        assert (await sandbox.run_code("x * 2 + 2")).text == "42"

        lines: list[str] = []

        async def on_stdout(message: OutputMessage) -> None:  # an async callback is awaited
            await asyncio.sleep(0)
            lines.append(message.line)

        printed = await sandbox.run_code("for i in range(3):\n    print(i)", on_stdout=on_stdout)
        assert "".join(lines) == "0\n1\n2\n" and printed.logs.stdout == lines

        failed = await sandbox.run_code("raise ValueError('bad value')")
        assert failed.error is not None
        assert (failed.error.name, failed.error.value) == ("ValueError", "bad value")

        plotted = await sandbox.run_code(
            "import matplotlib.pyplot as plt\nplt.bar([1, 2], [3, 4])\nplt.show()"
        )
        (figure,) = plotted.results
        assert figure.png and base64.b64decode(figure.png).startswith(PNG_MAGIC)

        await sandbox.files.write("/home/user/notes.txt", "async notes")
        assert await sandbox.files.read("/home/user/notes.txt") == "async notes"
        assert (await sandbox.run_code("open('notes.txt').read()")).text == "async notes"
        assert await sandbox.files.exists("notes.txt")

        # Two contexts run at the same time: a sleeping cell in one does not hold up the other.
        other = await sandbox.create_code_context()
        slow = asyncio.ensure_future(sandbox.run_code("import time\ntime.sleep(1.5)\n'slow'"))
        await asyncio.sleep(0.2)
        quick = await asyncio.wait_for(sandbox.run_code("'quick'", context=other), timeout=1.2)
        assert quick.text == "quick" and not slow.done()
        assert (await slow).text == "slow"

        assert await sandbox.is_running()
    finally:
        assert await sandbox.kill() is True
    assert not await sandbox.is_running()
    with pytest.raises(SandboxException, match="was not found"):
        await sandbox.run_code("x")


async def test_async_commands_and_terminal(e2b_env: LciServer) -> None:
    sandbox = await AsyncSandbox.create()
    try:
        result = await sandbox.commands.run("echo $A; pwd", envs={"A": "a"})
        assert result.stdout == "a\n/home/user\n"
        lines: list[str] = []
        cat = await sandbox.commands.run("cat", background=True, stdin=True, on_stdout=lines.append)
        await cat.send_stdin("piped")
        await cat.close_stdin()
        assert (await cat.wait()).stdout == "piped" and lines == ["piped"]
        sleeper = await sandbox.commands.run("sleep 30", background=True)
        assert [p.pid for p in await sandbox.commands.list()] == [sleeper.pid]
        assert await sandbox.commands.kill(sleeper.pid)
        with pytest.raises(CommandExitException):
            await sleeper.wait()

        seen: list[bytes] = []
        terminal = await sandbox.pty.create(PtySize(cols=80, rows=24), on_data=seen.append)
        await sandbox.pty.resize(terminal.pid, PtySize(cols=120, rows=24))
        await sandbox.pty.send_stdin(terminal.pid, b"tput cols; exit 0\n")
        assert (await terminal.wait()).exit_code == 0
        assert b"120" in b"".join(seen)
    finally:
        await sandbox.kill()
