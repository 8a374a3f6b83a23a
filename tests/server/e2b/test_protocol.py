"""E2B's wire protocol on lci seen from raw HTTP: who may address a sandbox, what a sandbox-addressed
request can reach, the NDJSON lines of /execute, refused options, and the SDK's debug mode."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from e2b_code_interpreter import Sandbox

from engine.models import DisplayOutput, ResultOutput
from engine.server.e2b import ndjson, shell
from tests.server.conftest import API_KEY
from tests.server.helpers import FakeModel, LciServer


@pytest.fixture
def created(server: LciServer) -> Iterator[dict[str, Any]]:
    reply = httpx.post(
        server.url + "/v2/sandboxes",
        json={"templateID": "base", "timeout": 120, "metadata": {"k": "v"}},
        headers={"X-API-Key": API_KEY},
    )
    assert reply.status_code == 201, reply.text
    body: dict[str, Any] = reply.json()
    yield body
    httpx.delete(f"{server.url}/sandboxes/{body['sandboxID']}", headers={"X-API-Key": API_KEY})


def addressed(sandbox: dict[str, Any], token: str | None = None) -> dict[str, str]:
    headers = {"E2b-Sandbox-Id": sandbox["sandboxID"], "E2b-Sandbox-Port": "49999"}
    headers["X-Access-Token"] = sandbox["envdAccessToken"] if token is None else token
    return headers


def lines(reply: httpx.Response) -> list[dict[str, Any]]:
    return [json.loads(line) for line in reply.text.splitlines() if line]


def test_the_control_plane_takes_the_key_as_e2b_sends_it(server: LciServer) -> None:
    assert httpx.get(server.url + "/v2/sandboxes").status_code == 401
    refused = httpx.get(server.url + "/v2/sandboxes", headers={"X-API-Key": "wrong"})
    assert refused.status_code == 401 and refused.json()["code"] == 401  # E2B's error shape
    assert httpx.get(server.url + "/v2/sandboxes", headers={"X-API-Key": API_KEY}).is_success
    # the same key, the same way, works for lci's own API too
    assert httpx.get(server.url + "/v1/sessions", headers={"X-API-Key": API_KEY}).is_success


def test_created_sandbox_has_the_fields_the_sdk_reads(created: dict[str, Any]) -> None:
    assert created["sandboxID"] and created["templateID"] == "base"
    assert created["envdVersion"] == "0.6.4" and created["clientID"] == "lci"
    assert created["envdAccessToken"] == created["trafficAccessToken"]


def test_sandbox_requests_need_the_sandbox_token(
    server: LciServer, created: dict[str, Any]
) -> None:
    execute = server.url + "/execute"
    assert (
        httpx.post(execute, json={"code": "1"}, headers=addressed(created, "wrong")).status_code
        == 401
    )
    no_token = {"E2b-Sandbox-Id": created["sandboxID"]}
    assert httpx.post(execute, json={"code": "1"}, headers=no_token).status_code == 401
    # the API key is not a sandbox token: it creates sandboxes, their token addresses them
    with_key = {**no_token, "X-API-Key": API_KEY}
    assert httpx.post(execute, json={"code": "1"}, headers=with_key).status_code == 401
    ok = httpx.post(execute, json={"code": "1"}, headers=addressed(created))
    assert ok.status_code == 200 and ok.headers["content-type"] == "application/x-ndjson"
    unknown = httpx.post(execute, json={"code": "1"}, headers={"E2b-Sandbox-Id": "nope"})
    assert unknown.status_code == 502 and "was not found" in unknown.json()["message"]


def test_a_sandbox_addressed_request_reaches_only_sandbox_routes(
    server: LciServer, created: dict[str, Any]
) -> None:
    """The gate lets sandbox-addressed requests through to check their own token: that must not
    open lci's other routes to a holder of a sandbox token (or of a made-up sandbox id)."""
    before = httpx.get(server.url + "/v1/sessions", headers=server.headers).json()["sessions"]
    for headers in (addressed(created), {"E2b-Sandbox-Id": "made-up"}):
        created_session = httpx.post(server.url + "/v1/sessions", json={}, headers=headers)
        assert created_session.status_code in (401, 404, 405, 501, 502)
        listed = httpx.get(server.url + "/v1/sessions", headers=headers)
        assert listed.status_code in (401, 404, 405, 502)
        assert "sessions" not in listed.text
    after = httpx.get(server.url + "/v1/sessions", headers=server.headers).json()["sessions"]
    assert len(after) == len(before)
    # and the internal prefix is not reachable without the header, key or no key
    for path in ("/e2b-sandbox/execute", "/e2b-sandbox/health"):
        assert httpx.post(server.url + path, json={"code": "1"}).status_code in (401, 404)
        assert httpx.get(server.url + path, headers=server.headers).status_code == 404


def test_execute_streams_e2b_lines(server: LciServer, created: dict[str, Any]) -> None:
    code = "import matplotlib.pyplot as plt\nprint('out')\nplt.plot([1])\nplt.show()\n{'a': 1}"
    reply = httpx.post(
        server.url + "/execute", json={"code": code}, headers=addressed(created), timeout=60
    )
    got = lines(reply)
    assert [line["type"] for line in got] == [
        "stdout",
        "result",
        "result",
        "number_of_executions",
        "end_of_execution",
    ]
    assert got[0]["text"] == "out\n" and isinstance(got[0]["timestamp"], int)
    assert got[1]["png"] and got[1]["is_main_result"] is False
    assert got[2] == {"type": "result", "is_main_result": True, "text": "{'a': 1}"}
    assert got[3]["execution_count"] >= 1
    failed = lines(
        httpx.post(
            server.url + "/execute", json={"code": "import nope"}, headers=addressed(created)
        )
    )
    assert failed[0]["type"] == "error" and failed[0]["name"] == "ModuleNotFoundError"
    assert "import nope" in failed[0]["traceback"]
    assert failed[-1] == {"type": "end_of_execution"}


def test_health_says_whether_the_sandbox_lives(server: LciServer, created: dict[str, Any]) -> None:
    assert httpx.get(server.url + "/health", headers=addressed(created)).status_code == 200
    httpx.delete(f"{server.url}/sandboxes/{created['sandboxID']}", headers={"X-API-Key": API_KEY})
    gone = httpx.get(server.url + "/health", headers=addressed(created))
    assert gone.status_code == 502 and "was not found" in gone.json()["message"]
    assert httpx.get(server.url + "/health").json()["status"] == "ok"  # lci's own is untouched


@pytest.mark.parametrize(
    ("option", "value"),
    [("autoPause", True), ("mcp", {"x": {}}), ("volumeMounts", [{"name": "v", "path": "/v"}])],
)
def test_options_lci_cannot_honour_are_refused(server: LciServer, option: str, value: Any) -> None:
    reply = httpx.post(
        server.url + "/v2/sandboxes",
        json={"templateID": "base", option: value},
        headers={"X-API-Key": API_KEY},
    )
    assert reply.status_code == 501 and option in reply.json()["message"]


def test_bad_create_fields_are_400(server: LciServer) -> None:
    key = {"X-API-Key": API_KEY}
    bad_env = {"templateID": "base", "envVars": {"1BAD": "x"}}
    assert httpx.post(server.url + "/v2/sandboxes", json=bad_env, headers=key).status_code == 400
    before = len(httpx.get(server.url + "/v1/sessions", headers=key).json()["sessions"])
    for timeout in (0, 24 * 3600 + 1):
        body = {"templateID": "base", "timeout": timeout}
        assert httpx.post(server.url + "/v2/sandboxes", json=body, headers=key).status_code == 400
    after = len(httpx.get(server.url + "/v1/sessions", headers=key).json()["sessions"])
    assert after == before  # nothing was started for a refused sandbox


def test_pause_is_not_supported(server: LciServer, created: dict[str, Any]) -> None:
    url = f"{server.url}/sandboxes/{created['sandboxID']}/pause"
    reply = httpx.post(url, json={}, headers={"X-API-Key": API_KEY})
    assert reply.status_code == 501 and "pause" in reply.json()["message"]
    sandbox_url = f"{server.url}/sandboxes/{created['sandboxID']}"
    (sample,) = httpx.get(sandbox_url + "/metrics", headers={"X-API-Key": API_KEY}).json()
    assert sample["memUsed"] > 0 and sample["memTotal"] >= sample["memUsed"]
    assert sample["cpuCount"] >= 1 and 0 <= sample["cpuUsedPct"] <= 100
    assert httpx.get(sandbox_url + "/logs", headers={"X-API-Key": API_KEY}).status_code == 501


def test_gzip_upload_is_bounded(server: LciServer, created: dict[str, Any]) -> None:
    import gzip

    bomb = gzip.compress(b"\0" * (4 << 20))  # 4 MiB inflated, past the 1 MiB upload limit
    headers = {**addressed(created), "Content-Type": "application/octet-stream"}
    reply = httpx.post(
        server.url + "/files",
        params={"path": "bomb.bin"},
        content=bomb,
        headers={**headers, "Content-Encoding": "gzip"},
    )
    assert reply.status_code == 413
    small = gzip.compress(b"fine")
    ok = httpx.post(
        server.url + "/files",
        params={"path": "ok.bin"},
        content=small,
        headers={**headers, "Content-Encoding": "gzip"},
    )
    assert ok.status_code == 200 and ok.json()[0]["name"] == "ok.bin"


def test_result_fields_follow_e2b_names() -> None:
    shown = ndjson.result(
        DisplayOutput(
            data={
                "text/plain": "<Figure>",
                "image/png": "iVBOR",
                "application/json": '{"a": [1]}',
                "application/x-custom": "z",
            }
        )
    )
    assert shown == {
        "type": "result",
        "is_main_result": False,
        "text": "<Figure>",
        "png": "iVBOR",
        "json": {"a": [1]},
        "extra": {"application/x-custom": "z"},
    }
    assert ndjson.result(ResultOutput(data={"text/plain": "'quoted'"}))["text"] == "quoted"
    assert ndjson.result(ResultOutput(data={"text/plain": "'"}))["text"] == "'"


def test_tables_and_charts_are_json_fields() -> None:
    chart = '{"type": "bar", "title": "T", "elements": []}'
    shown = ndjson.result(DisplayOutput(data={"e2b/chart": chart, "text/plain": "<Figure>"}))
    assert shown["chart"] == {"type": "bar", "title": "T", "elements": []}
    table = ndjson.result(ResultOutput(data={"e2b/data": '{"a": [1, null]}', "text/plain": "t"}))
    assert table["data"] == {"a": [1, None]} and "extra" not in table


def test_sdk_debug_mode_against_a_server_without_a_key(
    shared_fake: FakeModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`E2B_DEBUG=true` skips the control plane: the SDK addresses `debug_sandbox_id` with no token.
    lci serves it when it has no key to check, and refuses it when it has one."""
    monkeypatch.setenv("E2B_DEBUG", "true")
    monkeypatch.setenv("E2B_API_KEY", "unused")
    with LciServer(shared_fake.base_url) as open_server:
        monkeypatch.setenv("E2B_SANDBOX_URL", open_server.url)
        sandbox = Sandbox.create()
        assert sandbox.sandbox_id == "debug_sandbox_id"
        sandbox.run_code("kept = 5")
        assert sandbox.run_code("kept * 2").text == "10"
        sandbox.files.write("debug.txt", "d")
        assert sandbox.files.read("debug.txt") == "d"
        open_server.stop()
        assert "Traceback" not in open_server.logs()
    with LciServer(shared_fake.base_url, api_key="k") as keyed:
        monkeypatch.setenv("E2B_SANDBOX_URL", keyed.url)
        with pytest.raises(Exception, match="was not found"):
            Sandbox.create().run_code("1")


def test_ipython_shell_escapes_become_subprocess_calls() -> None:
    valid = "x = '!not a command'\nprint(x)"
    assert shell.translate(valid) == valid  # valid Python is never touched
    translated = shell.translate("!echo hi\nif True:\n    %pip install 'a b' c\ny = 1")
    assert translated.splitlines() == [
        "_exit_code = __import__('subprocess').run('echo hi', shell=True).returncode",
        "if True:",
        "    _exit_code = __import__('subprocess').run("
        "[__import__('sys').executable, '-m', 'pip', *['install', 'a b', 'c']]).returncode",
        "y = 1",
    ]
    assert shell.translate("%timeit 1") == "%timeit 1"  # other magics stay (and fail)


def test_an_envd_call_lci_does_not_know_is_a_clear_501(
    server: LciServer, created: dict[str, Any]
) -> None:
    headers = {**addressed(created), "Content-Type": "application/json"}
    reply = httpx.post(server.url + "/git.Git/Clone", content=b"{}", headers=headers)
    assert reply.status_code == 501
    assert "does not implement envd's 'git.Git/Clone'" in reply.text
