"""Snapshots and forks over the session API, against a real `lci serve`: take, list, restore and
delete a snapshot (state the host could not pickle and files come back), fork into new sessions
that diverge from their parent, the errors, and the owner rules (another key's session is not
there; forks belong to the caller and hit its quota)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from tests.server.helpers import FakeModel, LciServer

ALICE, BOB = "alice-key-0123456789", "bob-key-9876543210"

SETUP = """\
import itertools
handle = open('notes.txt', 'w')
handle.write('first ')
handle.flush()
counter = itertools.count()
gen = (i * i for i in range(10))
next(gen)
square = lambda v: v * v
x = 1
"""


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


def run(client: httpx.Client, sid: str, code: str) -> str:
    """The text of the cell's last expression (the cell must complete)."""
    reply = client.post(f"/v1/sessions/{sid}/execute", json={"code": code})
    assert reply.status_code == 200, reply.text
    execution = reply.json()
    assert execution["outcome"] == "completed", execution
    texts = [o["data"]["text/plain"] for o in execution["outputs"] if o.get("type") == "result"]
    return texts[-1] if texts else ""


def error_of(reply: httpx.Response, status: int, code: str) -> None:
    assert reply.status_code == status, reply.text
    assert reply.json()["error"]["code"] == code, reply.text


def test_snapshot_restore_list_delete(client: httpx.Client, sid: str) -> None:
    run(client, sid, SETUP)
    base = f"/v1/sessions/{sid}/snapshots"
    taken = client.post(base)
    assert taken.status_code == 201, taken.text
    snap = taken.json()
    assert snap["session_id"] == sid and snap["executions"] == 1 and snap["files"] >= 1
    assert isinstance(snap["disk_bytes"], int)

    run(client, sid, "x = 2\nhandle.write('second ')\nnext(gen)\nopen('new.txt', 'w').close()")
    restored = client.post(f"{base}/{snap['id']}/restore")
    assert restored.status_code == 200, restored.text
    assert restored.json()["id"] == snap["id"]
    state = "x, next(gen), square(7), next(counter), handle.closed"
    assert run(client, sid, state) == "(1, 1, 49, 0, False)"
    assert client.get(f"/v1/sessions/{sid}/files/notes.txt").content == b"first "
    names = {f["path"] for f in client.get(f"/v1/sessions/{sid}/files").json()["files"]}
    assert "new.txt" not in names

    listed = client.get(base)
    assert listed.status_code == 200
    assert [s["id"] for s in listed.json()["snapshots"]] == [snap["id"]]
    assert client.delete(f"{base}/{snap['id']}").status_code == 204
    assert client.get(base).json()["snapshots"] == []
    error_of(client.post(f"{base}/{snap['id']}/restore"), 404, "snapshot_not_found")
    error_of(client.delete(f"{base}/{snap['id']}"), 404, "snapshot_not_found")


def test_fork_diverges_from_its_parent(client: httpx.Client, sid: str) -> None:
    run(client, sid, "x = [1]\nopen('f.txt', 'w').write('parent')")
    reply = client.post(f"/v1/sessions/{sid}/fork", json={"n": 2})
    assert reply.status_code == 201, reply.text
    forks = reply.json()["forks"]
    assert len(forks) == 2
    ids = [f["session"]["id"] for f in forks]
    assert len({sid, *ids}) == 3 and "x" in forks[0]["kept"]
    try:
        live = {s["id"] for s in client.get("/v1/sessions").json()["sessions"]}
        assert set(ids) <= live
        run(client, ids[0], "x.append(2)\nopen('f.txt', 'w').write('child')")
        assert run(client, sid, "x") == "[1]"
        assert run(client, ids[1], "x") == "[1]"
        assert run(client, ids[0], "x") == "[1, 2]"
        assert client.get(f"/v1/sessions/{sid}/files/f.txt").content == b"parent"
        assert client.get(f"/v1/sessions/{ids[1]}/files/f.txt").content == b"parent"
    finally:
        for fork_id in ids:
            client.delete(f"/v1/sessions/{fork_id}")


def test_fork_from_a_snapshot(client: httpx.Client, sid: str) -> None:
    run(client, sid, "x = 'then'")
    snap = client.post(f"/v1/sessions/{sid}/snapshots").json()
    run(client, sid, "x = 'now'")
    reply = client.post(f"/v1/sessions/{sid}/fork", json={"snapshot_id": snap["id"]})
    assert reply.status_code == 201, reply.text
    (fork,) = reply.json()["forks"]
    try:
        assert run(client, fork["session"]["id"], "x") == "'then'"
        assert run(client, sid, "x") == "'now'"
    finally:
        client.delete(f"/v1/sessions/{fork['session']['id']}")
    missing = client.post(f"/v1/sessions/{sid}/fork", json={"snapshot_id": "nope"})
    error_of(missing, 404, "snapshot_not_found")


def test_bad_requests(client: httpx.Client, sid: str) -> None:
    fork = f"/v1/sessions/{sid}/fork"
    for body in ({"n": 0}, {"n": 17}, {"n": "2"}, {"extra": 1}):
        error_of(client.post(fork, json=body), 400, "invalid_request")
    unknown = "0000000000000000"
    for reply in (
        client.post(f"/v1/sessions/{unknown}/snapshots"),
        client.get(f"/v1/sessions/{unknown}/snapshots"),
        client.delete(f"/v1/sessions/{unknown}/snapshots/s"),
        client.post(f"/v1/sessions/{unknown}/snapshots/s/restore"),
        client.post(f"/v1/sessions/{unknown}/fork"),
    ):
        error_of(reply, 404, "session_not_found")


async def test_a_busy_session_is_not_snapshotted(server: LciServer, sid: str) -> None:
    async with server.async_client() as client:
        path = f"/v1/sessions/{sid}/execute"
        slow = asyncio.create_task(client.post(path, json={"code": "import time; time.sleep(1.5)"}))
        await asyncio.sleep(0.5)
        error_of(await client.post(f"/v1/sessions/{sid}/snapshots"), 409, "session_busy")
        assert (await slow).json()["outcome"] == "completed"
        assert (await client.post(f"/v1/sessions/{sid}/snapshots")).status_code == 201


# -- several keys ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tenants(
    shared_fake: FakeModel, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LciServer]:
    keys = tmp_path_factory.mktemp("keys") / "keys"
    keys.write_text(f"alice {ALICE}\nbob {BOB}\n")
    keys.chmod(0o600)
    env = {"LCI_MAX_SESSIONS_PER_OWNER": "3"}
    with LciServer(shared_fake.base_url, args=["--api-key-file", str(keys)], env=env) as running:
        yield running


def keyed(server: LciServer, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=60)


def test_another_key_cannot_snapshot_restore_or_fork(tenants: LciServer) -> None:
    with keyed(tenants, ALICE) as alice, keyed(tenants, BOB) as bob:
        sid = alice.post("/v1/sessions").json()["id"]
        run(alice, sid, "secret = 'alice'")
        snap = alice.post(f"/v1/sessions/{sid}/snapshots").json()
        base = f"/v1/sessions/{sid}/snapshots"
        attacks: list[httpx.Response] = [
            bob.post(base),
            bob.get(base),
            bob.post(f"{base}/{snap['id']}/restore"),
            bob.delete(f"{base}/{snap['id']}"),
            bob.post(f"/v1/sessions/{sid}/fork", json={"n": 1}),
            bob.post(f"/v1/sessions/{sid}/fork", json={"snapshot_id": snap["id"]}),
        ]
        for reply in attacks:
            error_of(reply, 404, "session_not_found")
        assert bob.get("/v1/sessions").json()["sessions"] == []
        assert [s["id"] for s in alice.get(base).json()["snapshots"]] == [snap["id"]]
        alice.delete(f"/v1/sessions/{sid}")


def test_forks_belong_to_the_caller_and_count_against_its_quota(tenants: LciServer) -> None:
    with keyed(tenants, ALICE) as alice, keyed(tenants, BOB) as bob:
        sid = alice.post("/v1/sessions").json()["id"]
        try:
            run(alice, sid, "x = 1")
            refused = alice.post(f"/v1/sessions/{sid}/fork", json={"n": 3})  # 1 + 3 > 3
            error_of(refused, 429, "capacity_exceeded")
            assert [s["id"] for s in alice.get("/v1/sessions").json()["sessions"]] == [sid]
            forks = alice.post(f"/v1/sessions/{sid}/fork", json={"n": 2})
            assert forks.status_code == 201, forks.text
            ids = [f["session"]["id"] for f in forks.json()["forks"]]
            owned = {s["id"] for s in alice.get("/v1/sessions").json()["sessions"]}
            assert owned == {sid, *ids}
            for fork_id in ids:
                error_of(bob.get(f"/v1/sessions/{fork_id}"), 404, "session_not_found")
                assert run(alice, fork_id, "x") == "1"
            error_of(alice.post(f"/v1/sessions/{ids[0]}/fork"), 429, "capacity_exceeded")
            assert bob.post("/v1/sessions").status_code == 201  # bob's quota is his own
        finally:
            for session in alice.get("/v1/sessions").json()["sessions"]:
                alice.delete(f"/v1/sessions/{session['id']}")
            for session in bob.get("/v1/sessions").json()["sessions"]:
                bob.delete(f"/v1/sessions/{session['id']}")
