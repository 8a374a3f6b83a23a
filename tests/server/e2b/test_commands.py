"""E2B's commands and terminals (`sandbox.commands`, `sandbox.pty`: envd's process service) with the
real `e2b` SDK against a real `lci serve`."""

from __future__ import annotations

import base64
import json
import struct
import time
from collections.abc import Iterator
from typing import Any
from unittest.mock import ANY

import httpx
import pytest
from e2b import CommandExitException, NotFoundException, TimeoutException
from e2b.sandbox.commands.command_handle import PtySize
from e2b_code_interpreter import Sandbox

from tests.server.helpers import LciServer


@pytest.fixture
def sandbox(e2b_env: LciServer) -> Iterator[Sandbox]:
    sbx = Sandbox.create(envs={"FROM_SANDBOX": "sbx"})
    yield sbx
    sbx.kill()


def test_run_a_command(sandbox: Sandbox) -> None:
    result = sandbox.commands.run("echo out; echo err >&2; pwd; echo $FROM_SANDBOX $FOO")
    assert result.exit_code == 0 and result.error is None
    assert result.stdout == "out\n/home/user\nsbx\n"
    assert result.stderr == "err\n"
    assert sandbox.commands.run("echo $FOO", envs={"FOO": "bar"}).stdout == "bar\n"
    assert sandbox.commands.run("echo $FOO").stdout == "\n"  # the call's variables only
    with pytest.raises(CommandExitException) as failed:
        sandbox.commands.run("echo partial; exit 3")
    assert failed.value.exit_code == 3 and failed.value.stdout == "partial\n"
    assert failed.value.error == "exit status 3"


def test_commands_share_the_interpreters_files(sandbox: Sandbox) -> None:
    sandbox.files.write("/home/user/data.txt", "from files")
    assert sandbox.commands.run("cat data.txt").stdout == "from files"
    sandbox.commands.run("mkdir -p sub && echo made > sub/x.txt")
    assert sandbox.commands.run("cat x.txt", cwd="/home/user/sub").stdout == "made\n"
    assert sandbox.commands.run("cat x.txt", cwd="sub").stdout == "made\n"
    assert sandbox.files.read("sub/x.txt") == "made\n"
    with pytest.raises(Exception, match="does not exist"):
        sandbox.commands.run("true", cwd="/home/user/nowhere")


def test_background_command_survives_its_stream_and_can_be_connected(sandbox: Sandbox) -> None:
    handle = sandbox.commands.run("for i in 1 2 3; do echo $i; sleep 0.5; done", background=True)
    handle.disconnect()  # the stream goes away; the command does not
    assert handle.pid in [p.pid for p in sandbox.commands.list()]
    again = sandbox.commands.connect(handle.pid)
    result = again.wait()
    assert result.exit_code == 0 and result.stdout.endswith("3\n")
    ended = sandbox.commands.connect(handle.pid)  # an ended command: its end, at once
    assert ended.wait().exit_code == 0
    assert handle.pid not in [p.pid for p in sandbox.commands.list()]
    with pytest.raises(NotFoundException):
        sandbox.commands.connect(999999)


def test_stdin_and_close_stdin(sandbox: Sandbox) -> None:
    cat = sandbox.commands.run("cat", background=True, stdin=True)
    sandbox.commands.send_stdin(cat.pid, "hello ")
    cat.send_stdin(b"world")
    cat.close_stdin()
    assert cat.wait().stdout == "hello world"
    no_stdin = sandbox.commands.run("sleep 30", background=True)
    with pytest.raises(Exception, match="without stdin"):
        sandbox.commands.send_stdin(no_stdin.pid, "x")
    no_stdin.kill()


def test_kill_and_list(sandbox: Sandbox) -> None:
    # What lci runs itself (the interpreter, a cell's own subprocesses) is never listed.
    sandbox.run_code("import subprocess\nkept = subprocess.Popen(['sleep', '30'])")
    sleeper = sandbox.commands.run("sleep 30", background=True, envs={"K": "v"}, cwd="/home/user")
    listed = sandbox.commands.list()
    assert [p.pid for p in listed] == [sleeper.pid]
    assert listed[0].cmd == "/bin/bash" and listed[0].args == ["-l", "-c", "sleep 30"]
    assert listed[0].envs == {"K": "v"} and listed[0].cwd == "/home/user"
    assert sandbox.commands.kill(sleeper.pid) is True
    with pytest.raises(CommandExitException):  # gone by the time kill answers
        sandbox.commands.run(f"kill -0 {sleeper.pid}")
    with pytest.raises(CommandExitException) as killed:
        sleeper.wait()
    assert killed.value.exit_code == -1 and killed.value.error == "signal: killed"
    assert sandbox.commands.list() == []
    assert sandbox.commands.kill(sleeper.pid) is False


def test_the_calls_timeout_is_the_commands(sandbox: Sandbox) -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutException):
        sandbox.commands.run("sleep 30", timeout=1)
    assert time.monotonic() - started < 10
    deadline = time.monotonic() + 10
    while sandbox.commands.list() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sandbox.commands.list() == []  # killed too


def test_a_terminal(sandbox: Sandbox) -> None:
    terminal = sandbox.pty.create(PtySize(cols=90, rows=30), envs={"ABC": "123"}, cwd="/")
    sandbox.pty.send_stdin(terminal.pid, b"echo $ABC $TERM; pwd; stty size\n")
    seen = b""
    for _, _, chunk in terminal:
        seen += chunk or b""
        if b"30 90" in seen:
            break
    assert b"123 xterm-256color\r\n/\r\n30 90" in seen
    sandbox.pty.resize(terminal.pid, PtySize(cols=100, rows=40))
    sandbox.pty.send_stdin(terminal.pid, b"stty size; exit 0\n")
    rest: list[bytes] = []
    assert terminal.wait(on_pty=rest.append).exit_code == 0
    assert b"40 100" in b"".join(rest)


def test_a_terminal_reconnected_and_killed(sandbox: Sandbox) -> None:
    terminal = sandbox.pty.create(PtySize(cols=80, rows=24), envs={"FOO": "bar"})
    sandbox.pty.send_stdin(terminal.pid, b"echo one-$FOO\n")
    terminal.disconnect()
    again = sandbox.pty.connect(terminal.pid)
    sandbox.pty.send_stdin(terminal.pid, b"echo two-$FOO\n")
    seen = b""
    for _, _, chunk in again:
        seen += chunk or b""
        if b"two-bar" in seen:
            break
    assert sandbox.pty.kill(terminal.pid) is True
    assert sandbox.pty.kill(terminal.pid) is False
    with pytest.raises(CommandExitException):
        sandbox.commands.run(f"kill -0 {terminal.pid}")


def test_a_sandbox_killed_under_a_command(e2b_env: LciServer) -> None:
    sbx = Sandbox.create()
    handle = sbx.commands.run("sleep 60", background=True)
    sbx.kill()
    with pytest.raises(TimeoutException, match="killed or reached its end of life"):
        handle.wait()


def _rpc(sandbox: Sandbox, server: LciServer) -> tuple[str, dict[str, str]]:
    headers = {
        "E2b-Sandbox-Id": sandbox.sandbox_id,
        "X-Access-Token": sandbox._envd_access_token or "",
        "Content-Type": "application/connect+json",
    }
    return server.url + "/process.Process/", headers


def _envelope(message: dict[str, Any], flags: int = 0) -> bytes:
    data = json.dumps(message).encode()
    return struct.pack(">BI", flags, len(data)) + data


def _messages(body: bytes) -> list[tuple[int, dict[str, Any]]]:
    found, at = [], 0
    while at < len(body):
        flags, size = struct.unpack_from(">BI", body, at)
        found.append((flags, json.loads(body[at + 5 : at + 5 + size])))
        at += 5 + size
    return found


def test_the_wire_stream_and_stream_input(sandbox: Sandbox, e2b_env: LciServer) -> None:
    """What envd sends, as the SDKs read it: start, keepalives while quiet, base64 data, Go's end
    fields, then the end of the stream; and input sent as a client stream (JavaScript's SDK)."""
    url, headers = _rpc(sandbox, e2b_env)
    start = {"process": {"cmd": "/bin/bash", "args": ["-c", "sleep 1.6; echo hi; exit 2"]}}
    reply = httpx.post(
        url + "Start",
        content=_envelope(start),
        headers={**headers, "Keepalive-Ping-Interval": "1"},
        timeout=30,
    )
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/connect+json"
    (_, first), *events, (flags, last) = _messages(reply.content)
    assert list(first["event"]) == ["start"] and first["event"]["start"]["pid"] > 0
    assert {"event": {"keepalive": {}}} in [m for _, m in events]
    assert {"event": {"data": {"stdout": base64.b64encode(b"hi\n").decode()}}} in [
        m for _, m in events
    ]
    end = {"exitCode": 2, "exited": True, "status": "exit status 2", "error": "exit status 2"}
    assert events[-1] == (0, {"event": {"end": end}})
    assert (flags, last) == (2, {})

    tagged = {"process": {"cmd": "cat"}, "tag": "reader", "stdin": True}
    unary = {**headers, "Content-Type": "application/json"}
    with httpx.stream(
        "POST", url + "Start", content=_envelope(tagged), headers=headers, timeout=30
    ) as running:
        chunks = running.iter_bytes()
        assert b'"start"' in next(chunks)
        body = _envelope({"start": {"process": {"tag": "reader"}}})
        for part in (b"one ", b"two"):
            body += _envelope({"data": {"input": {"stdin": base64.b64encode(part).decode()}}})
        streamed = httpx.post(url + "StreamInput", content=body, headers=headers, timeout=30)
        assert _messages(streamed.content) == [(0, {}), (2, {})]
        closed = httpx.post(url + "CloseStdin", json={"process": {"tag": "reader"}}, headers=unary)
        assert closed.status_code == 200 and closed.json() == {}
        rest = b"".join(chunks)
    datas = [
        m["event"]["data"]["stdout"] for _, m in _messages(rest) if "data" in m.get("event", {})
    ]
    assert b"".join(base64.b64decode(d) for d in datas) == b"one two"

    missing = _envelope({"process": {"pid": 999999}})
    gone = httpx.post(url + "Connect", content=missing, headers=headers, timeout=30)
    assert _messages(gone.content)[0] == (2, {"error": {"code": "not_found", "message": ANY}})
    signal = httpx.post(url + "SendSignal", json={"process": {"pid": 999999}}, headers=unary)
    assert signal.status_code == 404 and signal.json()["code"] == "not_found"
