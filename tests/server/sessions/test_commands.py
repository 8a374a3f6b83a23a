"""Commands and terminals over the session API, against a real `lci serve`: run, stream, background
with stdin and signals, reconnect, kill, errors, another key's session, and the terminal WebSocket
(its handshake checked like any request)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from websockets.exceptions import InvalidStatus, WebSocketException
from websockets.sync.client import connect

from tests.server.helpers import LciServer, read_sse


@pytest.fixture
def client(server: LciServer) -> Iterator[httpx.Client]:
    with server.client() as http:
        yield http


@pytest.fixture
def sid(client: httpx.Client) -> Iterator[str]:
    reply = client.post("/v1/sessions", json={})
    assert reply.status_code == 201, reply.text
    yield reply.json()["id"]
    client.delete(f"/v1/sessions/{reply.json()['id']}")


def test_run_waits_for_the_result(client: httpx.Client, sid: str) -> None:
    client.post(f"/v1/sessions/{sid}/execute", json={"code": "open('f.txt', 'w').write('x')"})
    reply = client.post(
        f"/v1/sessions/{sid}/commands", json={"cmd": "cat f.txt; echo e >&2; exit 2"}
    )
    assert reply.status_code == 200, reply.text
    result = reply.json()
    assert (result["stdout"], result["stderr"], result["exit_code"]) == ("x", "e\n", 2)
    assert result["timed_out"] is False and result["pid"] > 0

    timed = client.post(f"/v1/sessions/{sid}/commands", json={"cmd": "sleep 30", "timeout_s": 0.5})
    assert timed.json()["timed_out"] is True and timed.json()["exit_code"] == -9


def test_streaming_sends_output_as_it_comes_then_the_result(client: httpx.Client, sid: str) -> None:
    body = {
        "cmd": "echo one; sleep 0.3; echo two >&2; printf 'h\\xc3'; printf '\\xa9'",
        "stream": True,
    }
    with client.stream("POST", f"/v1/sessions/{sid}/commands", json=body) as reply:
        assert reply.headers["content-type"].startswith("text/event-stream")
        events = [e for e in read_sse(reply) if e.fields.get("event")]
    names = [e.fields["event"] for e in events]
    assert names[-1] == "result" and "stdout" in names and "stderr" in names
    stdout = "".join(
        json.loads(e.fields["data"])["data"] for e in events if e.fields["event"] == "stdout"
    )
    assert stdout == "one\nhé"  # a character split across two reads arrives whole
    assert json.loads(events[-1].fields["data"])["exit_code"] == 0


def test_background_command_with_stdin_reconnect_and_kill(client: httpx.Client, sid: str) -> None:
    base = f"/v1/sessions/{sid}/commands"
    started = client.post(base, json={"cmd": "cat", "stdin": True, "background": True, "tag": "t"})
    assert started.status_code == 201, started.text
    pid = started.json()["pid"]
    assert [c["pid"] for c in client.get(base).json()["commands"]] == [pid]
    assert client.post(f"{base}/{pid}/stdin", json={"data": "abc\n"}).status_code == 204
    assert (
        client.post(f"{base}/{pid}/stdin", json={"data_base64": "ZGVm", "eof": True}).status_code
        == 204
    )
    with client.stream("GET", f"{base}/{pid}/events") as reply:
        events = [e for e in read_sse(reply) if e.fields.get("event")]
    result = json.loads(events[-1].fields["data"])
    assert result["stdout"] == "abc\ndef" and result["exit_code"] == 0
    assert client.get(f"{base}/{pid}").json()["stdout"] == "abc\ndef"

    sleeper = client.post(base, json={"cmd": "sleep 60", "background": True}).json()["pid"]
    assert client.post(f"{base}/{sleeper}/signal", json={"signal": "nope"}).status_code == 400
    assert client.post(f"{base}/{sleeper}/resize", json={"cols": 10, "rows": 10}).status_code == 400
    killed = client.delete(f"{base}/{sleeper}")
    assert killed.json()["exit_code"] == -9
    assert client.post(f"{base}/{sleeper}/signal", json={"signal": "TERM"}).status_code == 404
    assert client.get(f"{base}/99999").status_code == 404


def test_bad_commands_are_clear_errors(client: httpx.Client, sid: str, server: LciServer) -> None:
    base = f"/v1/sessions/{sid}/commands"
    missing = client.post(base, json={"cmd": "no-such-program", "args": []})
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "command_failed"
    assert client.post(base, json={"cmd": "true", "env": {"1BAD": "x"}}).status_code in (400, 422)
    assert client.post(base, json={}).status_code in (400, 422)
    with httpx.Client(base_url=server.url, headers={"Authorization": "Bearer other"}) as stranger:
        assert stranger.post(base, json={"cmd": "true"}).status_code == 401


def test_terminal_over_a_websocket(server: LciServer, client: httpx.Client, sid: str) -> None:
    url = f"ws://127.0.0.1:{server.port}/v1/sessions/{sid}/pty?cols=100&rows=30"
    with connect(url, additional_headers=server.headers, open_timeout=30) as ws:
        started = json.loads(ws.recv(timeout=30))
        assert started["type"] == "started" and started["pid"] > 0
        ws.send(b"stty size; echo $((6*7))\n")
        seen = b""
        while b"30 100" not in seen or b"42" not in seen:
            message = ws.recv(timeout=10)
            assert isinstance(message, bytes)
            seen += message
        ws.send(json.dumps({"type": "resize", "cols": 90, "rows": 20}))
        ws.send(json.dumps({"type": "input", "data": "stty size\n"}))
        while b"20 90" not in seen:
            seen += ws.recv(timeout=10)  # type: ignore[operator]
        ws.send(b"exit 3\n")
        while True:
            message = ws.recv(timeout=10)
            if isinstance(message, str):
                assert json.loads(message) == {"type": "exit", "exit_code": 3, "error": None}
                break
    assert client.get(f"/v1/sessions/{sid}/commands").json()["commands"] == []


def test_terminal_handshake_needs_the_key_and_an_allowed_origin(
    server: LciServer, sid: str
) -> None:
    url = f"ws://127.0.0.1:{server.port}/v1/sessions/{sid}/pty"
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {**server.headers, "Origin": "https://evil.example"},
    ):
        refused(url, headers)
    refused(url.replace(sid, "no-such-session"), server.headers)


def refused(url: str, headers: dict[str, str]) -> None:
    with (
        pytest.raises((InvalidStatus, WebSocketException)),
        connect(url, additional_headers=headers, open_timeout=10) as ws,
    ):
        ws.recv(timeout=5)
