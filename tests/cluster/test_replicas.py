"""Two `lci serve --ray-address` replicas sharing the sessions of the real two-node cluster: any
replica serves any session, a full cluster answers 429, and a stopped node's sessions answer 410
while the others carry on. The node-loss test stops the worker node, so it runs last."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import ray

from engine.models import Execution
from tests.cluster.conftest import SESSIONS_PER_NODE, LocalCluster, remember_processes
from tests.fake_llm import stream
from tests.server.helpers import FakeModel, LciServer
from tests.server.mcp.helpers import http_client
from tests.server.mcp.helpers import run as run_tool

CI = [{"type": "code_interpreter"}]
CALL = "code_interpreter_call"
ALICE, BOB = "alice-key-0123456789", "bob-key-0123456789"


pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def model() -> Iterator[FakeModel]:
    with FakeModel() as fake:
        yield fake


@pytest.fixture(scope="module")
def replicas(
    local_cluster: LocalCluster, model: FakeModel, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LciServer, LciServer]]:
    keys = tmp_path_factory.mktemp("keys") / "keys"
    keys.write_text(f"alice {ALICE}\nbob {BOB}\n")
    keys.chmod(0o600)
    # Generous: the suite shares two cores with everything else, and a call that times out
    # counts its session as lost. A dead node's calls fail as soon as Ray marks it dead.
    env = {"LCI_RAY_CALL_TIMEOUT_S": "15", "LCI_RAY_PLACEMENT_TIMEOUT_S": "60"}
    args = ["--ray-address", local_cluster.address, "--api-key-file", str(keys)]
    with (
        LciServer(model.base_url, env=env, args=args) as one,
        LciServer(model.base_url, env=env, args=args) as two,
    ):
        one.api_key = two.api_key = ALICE
        assert f"sessions on the Ray cluster at {local_cluster.address}" in one.logs()
        yield one, two
        for server in (one, two):
            server.stop()
            assert "Traceback" not in server.logs(), server.logs()


def create(client: httpx.Client) -> dict[str, object]:
    response = client.post("/v1/sessions", json={})
    assert response.status_code == 201, response.text
    info: dict[str, object] = response.json()
    return info


def run(client: httpx.Client, session_id: object, code: str) -> httpx.Response:
    return client.post(f"/v1/sessions/{session_id}/execute", json={"code": code})


def result(response: httpx.Response) -> str | None:
    assert response.status_code == 200, response.text
    return Execution.model_validate(response.json()).result_text


def test_any_replica_serves_any_session(replicas: tuple[LciServer, LciServer]) -> None:
    one, two = replicas
    with one.client() as a, two.client() as b:
        first, second = create(a), create(a)
        try:
            assert {first["node_id"], second["node_id"]} == {
                n for n in (first["node_id"], second["node_id"]) if n
            }
            assert first["node_id"] != second["node_id"], "SPREAD puts them on both nodes"
            assert run(a, first["id"], "x = 20").json()["outcome"] == "completed"
            assert result(run(b, first["id"], "x + 22")) == "42"
            assert b.get(f"/v1/sessions/{first['id']}").json()["executions"] == 2
            listed = {s["id"] for s in b.get("/v1/sessions").json()["sessions"]}
            assert {first["id"], second["id"]} <= listed
            assert b.get("/health").json()["sessions"] >= 2  # the cluster's, not the replica's

            # Files: up through one replica, down through the other, in several pieces.
            blob = bytes(range(256)) * (3 * 4096 + 7)  # 3 MiB and a bit: four pieces
            up = b.post(f"/v1/sessions/{second['id']}/files", files={"file": ("d.bin", blob)})
            assert up.status_code == 201 and up.json()["size"] == len(blob), up.text
            down = a.get(f"/v1/sessions/{second['id']}/files/d.bin")
            assert down.status_code == 200 and down.content == blob
            assert a.get(f"/v1/sessions/{second['id']}/files/missing").status_code == 404
            size = result(run(b, second["id"], "import os; os.path.getsize('d.bin')"))
            assert size == str(len(blob))

            # Streaming through the other replica: events as they happen, then the Execution.
            body = {"code": "print('a'); print('b'); 6 * 7", "stream": True}
            with b.stream("POST", f"/v1/sessions/{first['id']}/execute", json=body) as stream:
                text = "".join(stream.iter_text())
            assert "event: stdout" in text and "event: execution" in text
            data = text.split("event: execution\ndata: ")[1].split("\n")[0]
            assert Execution.model_validate_json(data).result_text == "42"

            # Another key sees none of them on the replica that did not make them: the owner
            # is the actor's, not a replica's.
            bob = {"Authorization": f"Bearer {BOB}"}
            assert b.get(f"/v1/sessions/{first['id']}", headers=bob).status_code == 404
            assert run(b, first["id"], "x").status_code == 200
            assert (
                b.post(
                    f"/v1/sessions/{first['id']}/execute", json={"code": "x"}, headers=bob
                ).status_code
                == 404
            )
            assert b.get("/v1/sessions", headers=bob).json()["sessions"] == []
        finally:  # no assertion here: it would hide the one that failed above
            deleted = [
                a.delete(f"/v1/sessions/{first['id']}").status_code,
                b.delete(f"/v1/sessions/{second['id']}").status_code,
            ]
        assert deleted == [200, 200]
        assert b.get(f"/v1/sessions/{first['id']}").status_code == 404
        assert run(a, second["id"], "1").status_code == 404


def test_a_client_that_goes_away_stops_its_cell(replicas: tuple[LciServer, LciServer]) -> None:
    """The replica cancels its call to the actor, which interrupts the cell on its node: the
    session is free again within seconds, its state kept."""
    with replicas[0].client() as a, replicas[1].client() as b:
        session = create(a)
        assert run(a, session["id"], "x = 7").status_code == 200
        with pytest.raises(httpx.ReadTimeout):
            a.post(
                f"/v1/sessions/{session['id']}/execute",
                json={"code": "import time; time.sleep(60)"},
                timeout=1.5,
            )
        started = time.monotonic()
        reply = run(b, session["id"], "x")
        while reply.status_code == 409 and time.monotonic() - started < 10:
            time.sleep(0.2)
            reply = run(b, session["id"], "x")
        assert result(reply) == "7", reply.text
        assert a.delete(f"/v1/sessions/{session['id']}").status_code == 200


def test_a_responses_container_continues_on_the_other_replica(
    model: FakeModel, replicas: tuple[LciServer, LciServer]
) -> None:
    """The tool loop's sessions are cluster sessions too: a Responses container made through one
    replica is continued through the other, variables and files kept."""
    one, two = replicas
    model.reset()
    model.script(stream(calls=["x = 20\nopen('n.txt', 'w').write('kept')"]), stream(text="ok"))
    first = one.openai().responses.create(model="m", input="x", tools=CI)
    (call,) = [item for item in first.model_dump()["output"] if item["type"] == CALL]
    container = call["container_id"]
    model.script(stream(calls=["x * 2, open('n.txt').read()"]), stream(text="ok"))
    tools = [{"type": "code_interpreter", "container": container}]
    second = two.openai().responses.create(model="m", input="y", tools=tools)
    model.check()
    (call,) = [item for item in second.model_dump()["output"] if item["type"] == CALL]
    assert call["container_id"] == container
    assert call["outputs"][-1]["logs"] == "(40, 'kept')"
    with two.client() as b:
        assert b.delete(f"/v1/sessions/{container}").status_code == 200


async def test_mcp_sessions_run_on_the_cluster(
    local_cluster: LocalCluster, replicas: tuple[LciServer, LciServer]
) -> None:
    """MCP's sessions are cluster sessions too (its session ids stay with the replica that
    made them, as the README says)."""
    async with http_client(replicas[0]) as client:
        _, first = await run_tool(client, "x = 41\nx + 1")
        assert first["result"] == "42"
        session_id = first["session_id"]
        assert session_id in ray.util.list_named_actors()
        _, second = await run_tool(client, "x + 2", session_id=session_id)
        assert second["result"] == "43"
        await client.call_tool("close_session", {"session_id": session_id})
    assert session_id not in ray.util.list_named_actors()


def test_network_sessions_are_refused(replicas: tuple[LciServer, LciServer]) -> None:
    with replicas[0].client() as a:
        response = a.post("/v1/sessions", json={"limits": {"network": True}})
    assert response.status_code == 400
    assert "Ray's ports" in response.json()["error"]["message"]


def test_commands_on_the_cluster_are_a_clear_501(replicas: tuple[LciServer, LciServer]) -> None:
    with replicas[0].client() as a:
        sid = a.post("/v1/sessions", json={}).json()["id"]
        try:
            response = a.post(f"/v1/sessions/{sid}/commands", json={"cmd": "true"})
            assert response.status_code == 501, response.text
            assert "Ray cluster" in response.json()["error"]["message"]
        finally:
            a.delete(f"/v1/sessions/{sid}")


def test_a_full_cluster_answers_429(replicas: tuple[LciServer, LciServer]) -> None:
    one, two = replicas
    made = []
    with one.client() as a, two.client() as b:
        try:
            for _ in range(2 * SESSIONS_PER_NODE):
                made.append(create(a if len(made) % 2 else b)["id"])
            refused = a.post("/v1/sessions", json={})
            assert refused.status_code == 429, refused.text
            assert float(refused.headers["Retry-After"]) > 0
        finally:
            for session_id in made:
                a.delete(f"/v1/sessions/{session_id}")
        create_again = create(b)  # room again once they are closed
        b.delete(f"/v1/sessions/{create_again['id']}")


def test_a_stopped_node_loses_only_its_sessions(
    local_cluster: LocalCluster, replicas: tuple[LciServer, LciServer]
) -> None:
    one, two = replicas
    with one.client() as a, two.client() as b:
        sessions = [create(a) for _ in range(4)]
        on_worker = [s for s in sessions if s["node_id"] == local_cluster.worker_id]
        on_head = [s for s in sessions if s["node_id"] == local_cluster.head_id]
        assert on_worker and on_head
        for session in sessions:
            assert run(b, session["id"], "y = 5").status_code == 200
        remember_processes()
        # A cell running when the node goes must not hang its request either.
        with ThreadPoolExecutor(1) as pool:
            body = {"code": "import time; time.sleep(60)", "timeout_s": 30}
            path = f"/v1/sessions/{on_worker[-1]['id']}/execute"
            running = pool.submit(a.post, path, json=body)
            time.sleep(1.0)
            started = time.monotonic()
            local_cluster.cluster.remove_node(local_cluster.worker, allow_graceful=False)
            cut = running.result(timeout=30)
        assert cut.status_code == 410, cut.text
        assert time.monotonic() - started < 20  # the cell's own timeout is 30 s

        started = time.monotonic()
        lost = run(b, on_worker[0]["id"], "y")
        while lost.status_code == 200 and time.monotonic() - started < 20:
            time.sleep(0.2)  # the node's processes may take a moment to go
            lost = run(b, on_worker[0]["id"], "y")
        elapsed = time.monotonic() - started
        assert lost.status_code == 410, lost.text
        assert lost.json()["error"]["code"] == "session_lost"
        assert elapsed < 15, elapsed
        # It stays lost on this replica until deleted, as a local session whose storage died.
        assert run(b, on_worker[0]["id"], "y").status_code == 410
        assert b.get(f"/v1/sessions/{on_worker[0]['id']}").json()["state"] == "broken"
        for session in on_worker[1:]:
            assert run(a, session["id"], "y").status_code in (404, 410)
        # The others carry on, on both replicas.
        for session in on_head:
            assert result(run(a, session["id"], "y + 1")) == "6"
            assert result(run(b, session["id"], "y + 2")) == "7"
        for session in on_worker:
            assert b.delete(f"/v1/sessions/{session['id']}").status_code in (200, 404)
            assert a.delete(f"/v1/sessions/{session['id']}").status_code in (200, 404)
            assert b.get(f"/v1/sessions/{session['id']}").status_code == 404
        listed = {s["id"] for s in a.get("/v1/sessions").json()["sessions"]}
        assert listed == {s["id"] for s in on_head}
        # New sessions go to the node that is left; its start reaps what the dead sessions
        # left on this machine's disk (their owner processes are gone).
        fresh = create(b)
        assert fresh["node_id"] == local_cluster.head_id
        for session in [*on_head, fresh]:
            assert a.delete(f"/v1/sessions/{session['id']}").status_code == 200
