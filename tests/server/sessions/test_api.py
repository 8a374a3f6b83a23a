"""The plain session API over real HTTP: every endpoint, every error, concurrency, cancellation."""

from __future__ import annotations

import ast
import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.server.helpers import LciServer, read_sse


@pytest.fixture
def client(server: LciServer) -> Iterator[httpx.Client]:
    with server.client() as http:
        yield http


@pytest.fixture
def session_id(client: httpx.Client) -> Iterator[str]:
    reply = client.post("/v1/sessions", json={})
    assert reply.status_code == 201, reply.text
    sid: str = reply.json()["id"]
    yield sid
    client.delete(f"/v1/sessions/{sid}")


def error_of(reply: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert reply.status_code == status, reply.text
    error: dict[str, Any] = reply.json()["error"]
    assert error["code"] == code and isinstance(error["message"], str)
    return error


def execute(client: httpx.Client, sid: str, code: str, **kw: Any) -> httpx.Response:
    return client.post(f"/v1/sessions/{sid}/execute", json={"code": code, **kw})


def test_session_lifecycle(client: httpx.Client) -> None:
    reply = client.post(
        "/v1/sessions", json={"limits": {"timeout_s": 5}, "env": {"GREETING": "hi"}}
    )
    assert reply.status_code == 201
    info = reply.json()
    sid = info["id"]
    assert info["state"] == "idle" and info["backend"] == "subprocess"
    assert info["limits"]["timeout_s"] == 5 and info["limits"]["memory_mb"] == 256  # merged
    assert sid in [s["id"] for s in client.get("/v1/sessions").json()["sessions"]]
    assert client.get(f"/v1/sessions/{sid}").json()["id"] == sid
    result = execute(client, sid, "import os\nos.environ['GREETING'] + '!'").json()
    assert result["outcome"] == "completed"
    assert result["outputs"][-1]["data"]["text/plain"] == "'hi!'"
    assert client.get(f"/v1/sessions/{sid}").json()["executions"] == 1
    assert client.delete(f"/v1/sessions/{sid}").json() == {"id": sid, "deleted": True}
    error_of(client.get(f"/v1/sessions/{sid}"), 404, "session_not_found")
    assert client.post("/v1/sessions").status_code == 201  # no body at all: server defaults


def test_execute_reports_what_happened(client: httpx.Client, session_id: str) -> None:
    first = execute(client, session_id, "x = 21\nprint('a')\nx * 2").json()
    assert (first["outcome"], first["stdout"]) == ("completed", "a\n")
    assert first["outputs"][-1] == {"type": "result", "data": {"text/plain": "42"}, "metadata": {}}
    failed = execute(client, session_id, "1/0").json()
    assert failed["outcome"] == "error" and failed["error"]["name"] == "ZeroDivisionError"
    slow = execute(client, session_id, "import time\ntime.sleep(5)", timeout_s=0.3).json()
    assert slow["outcome"] == "interrupted" and slow["state_preserved"] is True
    assert execute(client, session_id, "x").json()["outputs"][-1]["data"]["text/plain"] == "21"


def test_outputs_carry_charts_and_tables(client: httpx.Client, session_id: str) -> None:
    code = (
        "import matplotlib.pyplot as plt, pandas as pd\n"
        "plt.bar(['a'], [2])\nplt.show()\npd.DataFrame({'n': [1]})"
    )
    reply = execute(client, session_id, code, timeout_s=60).json()  # a plot on a busy machine
    figure, table = reply["outputs"]
    assert figure["type"] == "display" and figure["data"]["image/png"]
    chart = json.loads(figure["data"]["e2b/chart"])
    assert chart["type"] == "bar" and chart["elements"][0]["label"] == "a"
    assert table["type"] == "result" and json.loads(table["data"]["e2b/data"]) == {"n": [1]}


def test_execute_streams_output_as_it_happens(server: LciServer, session_id: str) -> None:
    code = "import time\nfor i in range(3):\n    print(i, flush=True)\n    time.sleep(0.3)\n'end'"
    with (
        server.client() as client,
        client.stream(
            "POST", f"/v1/sessions/{session_id}/execute", json={"code": code, "stream": True}
        ) as reply,
    ):
        assert reply.headers["content-type"].startswith("text/event-stream")
        events = [e for e in read_sse(reply) if e.fields]
    names = [e.fields["event"] for e in events]
    assert names[-2:] == ["result", "execution"]
    stdout = [e for e in events if e.fields["event"] == "stdout"]
    assert "".join(e.json()["text"] for e in stdout) == "0\n1\n2\n"
    assert stdout[-1].at - stdout[0].at > 0.4  # live, not all at the end
    execution = events[-1].json()
    assert execution["outcome"] == "completed" and execution["stdout"] == "0\n1\n2\n"


def test_files(client: httpx.Client, session_id: str) -> None:
    base = f"/v1/sessions/{session_id}/files"
    reply = client.post(base, files={"file": ("data.csv", b"a,b\n1,2\n")})
    assert reply.status_code == 201 and reply.json()["path"] == "data.csv"
    reply = client.post(base, files={"file": ("x.bin", b"\x00\x01")}, data={"path": "sub/y.bin"})
    assert reply.json()["path"] == "sub/y.bin"
    listed = {f["path"]: f["size"] for f in client.get(base).json()["files"]}
    assert listed == {"data.csv": 8, "sub/y.bin": 2}
    result = execute(client, session_id, "open('data.csv').read().split()[1]").json()
    assert result["outputs"][-1]["data"]["text/plain"] == "'1,2'"
    execute(client, session_id, "open('made.txt', 'w').write('by code')")
    download = client.get(f"{base}/made.txt")
    assert download.content == b"by code"
    assert download.headers["content-type"] == "application/octet-stream"
    assert client.get(f"{base}/sub/y.bin").content == b"\x00\x01"
    error_of(client.get(f"{base}/missing.txt"), 404, "file_not_found")
    error_of(client.get(f"{base}/sub"), 400, "file_access")
    escape = client.post(base, files={"file": ("a", b"x")}, data={"path": "../escape"})
    error_of(escape, 400, "file_access")
    error_of(client.post(base, data={"path": "x"}), 400, "invalid_request")


def test_unknown_session_everywhere(client: httpx.Client) -> None:
    sid = "0000000000000000"
    for reply in (
        client.get(f"/v1/sessions/{sid}"),
        client.delete(f"/v1/sessions/{sid}"),
        execute(client, sid, "1"),
        execute(client, sid, "1", stream=True),
        client.get(f"/v1/sessions/{sid}/files"),
        client.get(f"/v1/sessions/{sid}/files/a.txt"),
        client.post(f"/v1/sessions/{sid}/files", files={"file": ("a", b"x")}),
    ):
        error_of(reply, 404, "session_not_found")


async def test_busy_session(server: LciServer, session_id: str) -> None:
    path = f"/v1/sessions/{session_id}/execute"
    async with server.async_client() as client:
        slow = asyncio.create_task(client.post(path, json={"code": "import time\ntime.sleep(1.5)"}))
        await asyncio.sleep(0.5)
        for stream_it in (False, True):
            reply = await client.post(path, json={"code": "1", "stream": stream_it})
            error_of(reply, 409, "session_busy")
        assert (await client.get(f"/v1/sessions/{session_id}")).json()["state"] == "busy"
        queued = await client.post(path, json={"code": "'after'", "wait": True})
        assert (await slow).json()["outcome"] == "completed"
        assert queued.json()["outputs"][-1]["data"]["text/plain"] == "'after'"


def test_malformed_bodies(client: httpx.Client, session_id: str) -> None:
    path = f"/v1/sessions/{session_id}/execute"
    headers = {"Content-Type": "application/json"}
    error_of(client.post(path, content=b"{not json", headers=headers), 400, "invalid_request")
    assert error_of(client.post(path, json={}), 400, "invalid_request")["param"] == "code"
    error_of(client.post(path, json={"code": "1", "colour": "red"}), 400, "invalid_request")
    error_of(client.post(path, json={"code": 5}), 400, "invalid_request")
    error_of(client.post(path, json={"code": "1", "timeout_s": -1}), 400, "invalid_request")
    error_of(client.post("/v1/sessions", json={"env": {"BAD NAME": "x"}}), 400, "invalid_request")
    error_of(client.post("/v1/sessions", json={"limits": {"memory_mb": 1}}), 400, "invalid_request")
    error_of(client.post("/v1/sessions", json={"backend": "vm"}), 400, "invalid_request")
    error_of(client.get("/v1/nowhere"), 404, "not_found")
    error_of(client.put("/v1/sessions"), 405, "method_not_allowed")


def test_oversized_bodies(server: LciServer, client: httpx.Client, session_id: str) -> None:
    big = "x = '" + "a" * (300 * 1024) + "'"
    error_of(execute(client, session_id, big), 413, "payload_too_large")

    def chunked() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"code": "'
        for _ in range(40):
            yield b"a" * 8192
        yield b'"}'

    reply = client.post(
        f"/v1/sessions/{session_id}/execute",
        content=chunked(),
        headers={"Content-Type": "application/json"},
    )
    error_of(reply, 413, "payload_too_large")
    upload = client.post(
        f"/v1/sessions/{session_id}/files", files={"file": ("big", b"0" * (1100 * 1024))}
    )
    error_of(upload, 413, "payload_too_large")
    small_upload = client.post(
        f"/v1/sessions/{session_id}/files", files={"file": ("ok", b"0" * (600 * 1024))}
    )
    assert small_upload.status_code == 201  # uploads have their own, larger limit
    chat = client.post(
        "/v1/chat/completions", json={"messages": [{"role": "user", "content": big}]}
    )
    assert chat.status_code == 413 and chat.json()["error"]["type"] == "invalid_request_error"
    native = client.post(
        "/api/v1/services/aigc/text-generation/generation",
        json={"input": {"messages": [{"role": "user", "content": big}]}},
    )
    assert native.status_code == 413 and native.json()["code"] == "RequestTooLarge"


def test_auth(server: LciServer) -> None:
    with httpx.Client(base_url=server.url) as anonymous:
        error_of(anonymous.get("/v1/sessions"), 401, "unauthorized")
        wrong = {"Authorization": "Bearer nope"}
        error_of(anonymous.get("/v1/sessions", headers=wrong), 401, "unauthorized")
        error_of(anonymous.post("/v1/sessions", headers=wrong), 401, "unauthorized")
        basic = {"Authorization": f"Basic {server.api_key}"}
        error_of(anonymous.get("/v1/sessions", headers=basic), 401, "unauthorized")
        assert anonymous.get("/health").status_code == 200
        assert anonymous.get("/openapi.json").json()["info"]["title"] == "lci"
        reply = anonymous.post("/v1/responses", json={"input": "x"})
        assert reply.status_code == 401 and reply.json()["error"]["code"] == "invalid_api_key"
    with (
        openai.OpenAI(api_key="nope", base_url=server.url + "/v1", max_retries=0) as client,
        pytest.raises(openai.AuthenticationError),
    ):
        client.responses.create(model="m", input="x")


async def test_many_sessions_in_parallel(server: LciServer) -> None:
    count, sleep_s = 10, 1.0
    # Each cell reports when its sleep began and ended (the sandboxes share the host's clock).
    cell = f"import time\nstart = time.time()\ntime.sleep({sleep_s})\n(n * 2, start, time.time())"

    async def one(client: httpx.AsyncClient, n: int) -> tuple[str, tuple[int, float, float]]:
        sid = (await client.post("/v1/sessions", json={})).json()["id"]
        path = f"/v1/sessions/{sid}/execute"
        await client.post(path, json={"code": f"n = {n}"})
        reply = await client.post(path, json={"code": cell})
        return sid, ast.literal_eval(reply.json()["outputs"][-1]["data"]["text/plain"])

    async with server.async_client() as client:
        results = await asyncio.gather(*(one(client, n) for n in range(count)))
        assert [value for _, (value, _, _) in results] == [n * 2 for n in range(count)]
        assert len({sid for sid, _ in results}) == count
        live = {s["id"] for s in (await client.get("/v1/sessions")).json()["sessions"]}
        assert {sid for sid, _ in results} <= live
        deleted = await asyncio.gather(*(client.delete(f"/v1/sessions/{s}") for s, _ in results))
        assert all(r.status_code == 200 for r in deleted)
    first_start = min(start for _, (_, start, _) in results)
    last_end = max(end for _, (_, _, end) in results)
    assert last_end - first_start < count * sleep_s / 2  # one after another would take it all


async def test_a_client_that_disconnects_cancels_its_execution(
    server: LciServer, session_id: str
) -> None:
    path = f"/v1/sessions/{session_id}/execute"
    body = {"code": "import time\ntime.sleep(60)", "stream": True}
    async with server.async_client() as client:
        async with client.stream("POST", path, json=body) as reply:
            async for line in reply.aiter_lines():
                if line.startswith(": started"):
                    break  # the execution runs; now go away
        await _until_idle(client, session_id)
        assert (await client.post(path, json={"code": "1+1"})).json()["outcome"] == "completed"
        # the same without streaming: the client gives up waiting
        with pytest.raises(httpx.ReadTimeout):
            await client.post(path, json={"code": "import time\ntime.sleep(60)"}, timeout=0.5)
        await _until_idle(client, session_id)


async def _until_idle(client: httpx.AsyncClient, session_id: str, within_s: float = 10) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if (await client.get(f"/v1/sessions/{session_id}")).json()["state"] == "idle":
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the execution was not stopped")


def test_openapi_document_describes_the_routes(client: httpx.Client) -> None:
    document = client.get("/openapi.json").json()
    paths = document["paths"]
    for path in (
        "/v1/sessions",
        "/v1/sessions/{session_id}",
        "/v1/sessions/{session_id}/execute",
        "/v1/sessions/{session_id}/files",
        "/v1/sessions/{session_id}/files/{path}",
        "/v1/responses",
        "/v1/chat/completions",
        "/api/v1/services/aigc/text-generation/generation",
    ):
        assert path in paths
    execute_op = paths["/v1/sessions/{session_id}/execute"]["post"]
    assert set(execute_op["responses"]) >= {"200", "404", "409"}
    assert "text/event-stream" in execute_op["responses"]["200"]["content"]
