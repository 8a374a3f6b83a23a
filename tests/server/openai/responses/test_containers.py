"""Surface A: containers. The container of a code call is an lci session: it keeps state within a
request, is not shared across requests, continues when passed back (or through
previous_response_id), and makes room for new work when the server is full."""

from __future__ import annotations

import json
import time

import openai
import pytest

from tests.fake_llm import stream
from tests.server import checks
from tests.server.helpers import FakeModel, LciServer, covers

CI = [{"type": "code_interpreter"}]


def sdk(server: LciServer) -> openai.OpenAI:
    return server.openai()


@covers(6)
def test_state_persists_within_a_request_and_not_across(fake: FakeModel, server: LciServer) -> None:
    fake.script(stream(calls=["secret = 41"]), stream(calls=["secret + 1"]), stream(text="42"))
    first = sdk(server).responses.create(model="m", input="x", tools=CI)
    fake.script(stream(calls=["secret"]), stream(text="gone"))
    second = sdk(server).responses.create(model="m", input="x", tools=CI)
    fake.check()
    logs = [
        c["outputs"][-1]["logs"]
        for c in checks.code_calls_well_formed(first.model_dump()["output"])
    ]
    assert logs == ["", "42"]
    (call,) = checks.code_calls_well_formed(second.model_dump()["output"])
    assert "NameError" in call["outputs"][-1]["logs"]
    assert (
        call["container_id"]
        != checks.code_calls_well_formed(first.model_dump()["output"])[0]["container_id"]
    )


def test_container_continues_in_the_same_session(fake: FakeModel, server: LciServer) -> None:
    """The container id is an lci session: passing it back keeps variables and files."""
    fake.script(stream(calls=["x = 20\nopen('notes.txt', 'w').write('kept')"]), stream(text="ok"))
    first = sdk(server).responses.create(model="m", input="x", tools=CI)
    (call,) = checks.code_calls_well_formed(first.model_dump()["output"])
    container = call["container_id"]
    with server.client() as client:
        assert client.get(f"/v1/sessions/{container}").json()["id"] == container
        files = client.get(f"/v1/sessions/{container}/files").json()["files"]
        assert [f["path"] for f in files] == ["notes.txt"]
    fake.script(stream(calls=["x * 2, open('notes.txt').read()"]), stream(text="ok"))
    tools = [{"type": "code_interpreter", "container": container}]
    second = sdk(server).responses.create(model="m", input="y", tools=tools)
    fake.check()
    (call,) = checks.code_calls_well_formed(second.model_dump()["output"])
    assert call["container_id"] == container
    assert call["outputs"][-1]["logs"] == "(40, 'kept')"
    with server.client() as client:
        assert client.delete(f"/v1/sessions/{container}").status_code == 200


def test_unknown_container_is_404(fake: FakeModel, server: LciServer) -> None:
    tools = [{"type": "code_interpreter", "container": "0123456789abcdef"}]
    with pytest.raises(openai.NotFoundError) as caught:
        sdk(server).responses.create(model="m", input="x", tools=tools)
    assert caught.value.body["param"] == "tools"  # type: ignore[index]
    assert fake.requests == []


def test_previous_response_id_continues_the_conversation(
    fake: FakeModel, server: LciServer
) -> None:
    fake.script(stream(reasoning="Set it.", calls=["y = 5"]), stream(text="y is set"))
    first = sdk(server).responses.create(model="m", input="set y", tools=CI)
    fake.script(stream(calls=["y + 1"]), stream(text="6"))
    second = sdk(server).responses.create(
        model="m", input="add one", tools=CI, previous_response_id=first.id
    )
    fake.check()
    sent = fake.chat_requests()[2]["messages"]
    roles = [m["role"] for m in sent]
    assert roles == ["system", "user", "assistant", "tool", "assistant", "user"]
    assert sent[2]["reasoning_content"] == "Set it."
    assert sent[4]["content"] == "y is set" and sent[5]["content"] == "add one"
    (call,) = checks.code_calls_well_formed(second.model_dump()["output"])
    assert call["outputs"][-1]["logs"] == "6"  # same container: y survived
    with pytest.raises(openai.NotFoundError) as caught:
        sdk(server).responses.create(
            model="m", input="x", tools=CI, previous_response_id="resp_missing"
        )
    assert caught.value.body["param"] == "previous_response_id"  # type: ignore[index]


def test_kept_containers_make_room_for_new_work(fake: FakeModel) -> None:
    """Containers outlive their request; when the server is full the least recently used idle one
    is closed, never a session made with the session API."""
    with LciServer(fake.base_url, env={"LCI_MAX_SESSIONS": "2"}) as small, small.client() as client:
        own = client.post("/v1/sessions").json()["id"]
        containers = []
        for _ in range(3):
            fake.script(stream(calls=["1"]), stream(text="ok"))
            response = small.openai().responses.create(model="m", input="x", tools=CI)
            assert response.status == "completed"
            (call,) = checks.code_calls_well_formed(response.model_dump()["output"])
            containers.append(call["container_id"])
        fake.check()
        live = {s["id"] for s in client.get("/v1/sessions").json()["sessions"]}
        assert live == {own, containers[-1]}
        second = client.post("/v1/sessions")  # the idle container makes room for it too
        assert second.status_code == 201
        live = {s["id"] for s in client.get("/v1/sessions").json()["sessions"]}
        assert live == {own, second.json()["id"]}
        full = client.post("/v1/sessions")  # only session-API sessions left: the server is full
        assert full.status_code == 429 and full.json()["error"]["code"] == "capacity_exceeded"


def test_a_client_that_disconnects_stops_the_running_code(
    fake: FakeModel, server: LciServer
) -> None:
    fake.script(stream(calls=["import time\ntime.sleep(60)"]))
    body = {"model": "m", "input": "x", "tools": CI, "stream": True}
    container = None
    with server.client() as client:
        with client.stream("POST", "/v1/responses", json=body) as reply:
            for line in reply.iter_lines():
                if line.startswith("data:") and '"container_id"' in line:
                    container = json.loads(line[5:])["item"]["container_id"]
                if "code_interpreter_call.interpreting" in line:
                    break  # the code runs; now go away
        assert container is not None
        deadline = time.monotonic() + 10
        while client.get(f"/v1/sessions/{container}").json()["state"] != "idle":
            assert time.monotonic() < deadline, "the execution was not stopped"
            time.sleep(0.1)
        executed = client.post(f"/v1/sessions/{container}/execute", json={"code": "1+1"})
        assert executed.json()["outcome"] == "completed"
    fake.check()
