"""Observability of a real `lci serve`: traffic on several surfaces, then /metrics read with
Prometheus's own text parser (the counts match what was done), the JSON log parsed line by line
(access and audit events, with the request ids the responses carried), /metrics on a port of its
own, and per-session usage in the session API."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import docker_unavailable_reason, require_docker
from tests.server.helpers import FakeModel, LciServer, free_port, stream

KEY = "obs-key"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str, headers: dict[str, str] | None = None) -> Samples:
    reply = httpx.get(url, headers=headers or {}, timeout=30)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(reply.text):
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels`."""
    return sum(
        v for (n, found), v in samples.items() if n == name and set(labels.items()) <= set(found)
    )


def names(samples: Samples) -> set[str]:
    return {name for name, _ in samples}


def json_lines(server: LciServer) -> list[dict[str, Any]]:
    """Every line the server wrote that is not its start-up banner, parsed: each must be JSON."""
    lines = [line for line in server.logs().splitlines() if line and not line.startswith("lci:")]
    return [json.loads(line) for line in lines]


def drive_sessions(server: LciServer) -> tuple[str, str, dict[str, Any]]:
    """Two sessions, three executions (one error), a file up and down, one session deleted;
    the live session's id, an execution's request id, and the live session's info."""
    with server.client() as client:
        a = client.post("/v1/sessions", json={}).json()["id"]
        b = client.post("/v1/sessions", json={}).json()["id"]
        ran = client.post(f"/v1/sessions/{a}/execute", json={"code": "1+1"})
        request_id = ran.headers["x-request-id"]
        client.post(f"/v1/sessions/{a}/execute", json={"code": "1/0"})
        client.post(f"/v1/sessions/{b}/execute", json={"code": "x = 1"})
        up = client.post(f"/v1/sessions/{a}/files", files={"file": ("d.bin", b"7" * 1000)})
        assert up.status_code == 201
        assert client.get(f"/v1/sessions/{a}/files/d.bin").content == b"7" * 1000
        assert client.delete(f"/v1/sessions/{b}").status_code == 200
        info = client.get(f"/v1/sessions/{a}").json()
    return a, request_id, info


@pytest.mark.slow
def test_metrics_and_logs_count_what_was_done(shared_fake: FakeModel) -> None:
    env = {"LCI_MAX_SESSIONS": "4", "LCI_SUBPROCESS_WARM_POOL": "1"}
    with LciServer(
        shared_fake.base_url, api_key=KEY, env=env, args=["--log-format", "json"]
    ) as server:
        shared_fake.reset()
        auth = server.headers
        a, request_id, info = drive_sessions(server)
        shared_fake.script(stream(calls=["1+1"]), stream(text="2"))
        chat = server.openai().chat.completions.create(
            model="fake-model",
            messages=[{"role": "user", "content": "add"}],
            extra_body={"enable_code_interpreter": True},
        )
        assert chat.choices[0].message.content
        assert httpx.get(server.url + "/v1/sessions").status_code == 401
        assert httpx.get(server.url + "/metrics").status_code == 401  # behind the key
        with server.client() as client:  # `a` is live (the chat's session is closed): 3 more
            statuses = [client.post("/v1/sessions", json={}).status_code for _ in range(4)]
        assert statuses == [201, 201, 201, 429]
        live = httpx.get(server.url + "/health").json()["sessions"]
        samples = scrape(server.url + "/metrics", auth)
        logs = json_lines(server)

    assert value(samples, "lci_sessions_created_total", surface="sessions") == 5
    assert value(samples, "lci_sessions_created_total", surface="openai") == 1
    assert value(samples, "lci_sessions_live") == live == 4
    assert value(samples, "lci_sessions_closed_total", surface="sessions", reason="closed") == 1
    assert value(samples, "lci_session_start_seconds_count") == 6
    paths = {
        dict(labels)["path"] for n, labels in samples if n == "lci_session_start_seconds_count"
    }
    assert paths <= {"pool", "forkserver", "cold"} and paths
    assert value(samples, "lci_execution_seconds_count", outcome="completed") == 3
    assert value(samples, "lci_execution_seconds_count", outcome="error") == 1
    assert value(samples, "lci_execution_slot_wait_seconds_count") == 4
    assert value(samples, "lci_file_bytes_total", direction="in", surface="sessions") == 1000
    assert value(samples, "lci_file_bytes_total", direction="out", surface="sessions") == 1000
    assert value(samples, "lci_loop_rounds_total") == 2
    assert value(samples, "lci_upstream_seconds_count", outcome="ok") == 2
    assert value(samples, "lci_capacity_refusals_total", cap="sessions") == 1
    assert value(samples, "lci_http_request_seconds_count", status="4xx") >= 3  # 401s, 429
    owners = [dict(labels)["owner"] for n, labels in samples if n == "lci_owner_sessions"]
    assert len(owners) == 1 and KEY not in owners[0]  # hashed
    assert value(samples, "lci_owner_sessions") == 4
    charge = (256 + 32) * 1024 * 1024  # tests' SMALL_LIMITS: memory_mb + disk_mb
    assert value(samples, "lci_memory_budget_used_bytes") == 4 * charge
    assert value(samples, "lci_session_usage", figure="memory_bytes") > 0
    assert value(samples, "lci_session_usage", figure="cpu_seconds") > 0
    assert {"lci_warm_pool_ready", "lci_warm_pool_refills_total"} <= names(samples)
    assert info["usage"]["memory_bytes"] > 0 and info["usage"]["disk_bytes"] >= 1000

    check_logs(logs, request_id, a)


def check_logs(logs: list[dict[str, Any]], request_id: str, a: str) -> None:
    """Audit and access events of the traffic above, with the context of their requests."""
    events = [line for line in logs if line.get("event")]
    created = [e for e in events if e["event"] == "session.create"]
    assert len(created) == 6 and all(e["owner"] and KEY not in e["owner"] for e in created)
    assert {e["surface"] for e in created} == {"sessions", "openai"}
    kinds = {e["event"] for e in events}
    assert {"session.close", "file.upload", "file.download", "auth.failure"} <= kinds
    runs = [e for e in events if e["event"] == "execution" and e["request_id"] == request_id]
    assert runs and runs[0]["outcome"] == "completed" and runs[0]["session_id"] == a
    access = [line for line in logs if line["logger"] == "lci.access"]
    mine = [line for line in access if line.get("request_id") == request_id]
    assert mine and mine[0]["status"] == 200 and mine[0]["duration_ms"] > 0


def test_metrics_on_a_port_of_their_own(shared_fake: FakeModel) -> None:
    port = free_port()
    with LciServer(shared_fake.base_url, api_key=KEY, args=["--metrics-port", str(port)]) as server:
        assert httpx.get(server.url + "/metrics", headers=server.headers).status_code == 404
        with server.client() as client:
            client.post("/v1/sessions", json={})
        samples = scrape(f"http://127.0.0.1:{port}/metrics")  # loopback only, no key
        assert value(samples, "lci_sessions_created_total") == 1


def test_metrics_can_be_switched_off(shared_fake: FakeModel) -> None:
    with LciServer(shared_fake.base_url, args=["--no-metrics"]) as server:
        reply = httpx.get(server.url + "/metrics")
        assert reply.status_code == 404
        assert reply.headers["x-request-id"]  # request ids are always there
        given = httpx.get(server.url + "/health", headers={"x-request-id": "trace-me.1"})
        assert given.headers["x-request-id"] == "trace-me.1"


@pytest.mark.docker
@pytest.mark.slow
def test_docker_sessions_are_counted_and_measured(shared_fake: FakeModel) -> None:
    from engine.config import Settings

    if docker_unavailable_reason(Settings()) is not None:
        require_docker(Settings())
    with LciServer(shared_fake.base_url, api_key=KEY) as server, server.client() as client:
        created = client.post("/v1/sessions", json={"backend": "docker"})
        assert created.status_code == 201, created.text
        sid = created.json()["id"]
        client.post(f"/v1/sessions/{sid}/execute", json={"code": "b = bytearray(20 << 20)"})
        info = client.get(f"/v1/sessions/{sid}").json()
        samples = scrape(server.url + "/metrics", server.headers)
        client.delete(f"/v1/sessions/{sid}")
    assert value(samples, "lci_sessions_created_total", backend="docker") == 1
    assert value(samples, "lci_session_start_seconds_count", backend="docker", path="docker_cold")
    assert value(samples, "lci_execution_seconds_count", backend="docker") == 1
    assert info["usage"]["memory_bytes"] > 20 << 20 and info["usage"]["cpu_s"] > 0
    assert value(samples, "lci_session_usage", backend="docker", figure="memory_bytes") > 0
