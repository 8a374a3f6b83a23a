"""Several API keys: each key's sessions, containers and stored responses are invisible to every
other key (404, as if they did not exist). Keys come from the environment or a keys file, never the
command line, where any local user reads them in /proc/<pid>/cmdline."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.fake_llm import stream
from tests.server import checks
from tests.server.helpers import REPO, FakeModel, LciServer, free_port

ALICE, BOB = "alice-key-0123456789", "bob-key-9876543210"
CI = [{"type": "code_interpreter"}]


@pytest.fixture(scope="module")
def keys_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "keys"
    path.write_text(f"# name key\nalice {ALICE}\n\nbob {BOB}\n")
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def tenants(shared_fake: FakeModel, keys_file: Path) -> Iterator[LciServer]:
    with LciServer(shared_fake.base_url, args=["--api-key-file", str(keys_file)]) as running:
        yield running


def client(server: LciServer, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=60)


def test_another_key_cannot_see_or_drive_a_session(tenants: LciServer) -> None:
    with client(tenants, ALICE) as alice, client(tenants, BOB) as bob:
        created = alice.post("/v1/sessions")
        assert created.status_code == 201, created.text
        sid = created.json()["id"]
        run = alice.post(f"/v1/sessions/{sid}/execute", json={"code": "open('s','w').write('x')"})
        assert run.status_code == 200
        assert bob.get("/v1/sessions").json()["sessions"] == []
        assert [s["id"] for s in alice.get("/v1/sessions").json()["sessions"]] == [sid]
        attacks = [
            bob.get(f"/v1/sessions/{sid}"),
            bob.post(f"/v1/sessions/{sid}/execute", json={"code": "open('s').read()"}),
            bob.get(f"/v1/sessions/{sid}/files"),
            bob.get(f"/v1/sessions/{sid}/files/s"),
            bob.post(f"/v1/sessions/{sid}/files", files={"file": ("t", b"planted")}),
            bob.delete(f"/v1/sessions/{sid}"),
        ]
        for reply in attacks:
            assert reply.status_code == 404, (reply.request.url, reply.text)
            assert reply.json()["error"]["code"] == "session_not_found"
        assert alice.get(f"/v1/sessions/{sid}/files/s").content == b"x"
        assert alice.delete(f"/v1/sessions/{sid}").status_code == 200
        assert httpx.get(tenants.url + "/v1/sessions").status_code == 401


def test_another_key_cannot_use_a_container_or_a_stored_response(
    fake: FakeModel, tenants: LciServer
) -> None:
    alice = openai.OpenAI(api_key=ALICE, base_url=tenants.url + "/v1", max_retries=0)
    bob = openai.OpenAI(api_key=BOB, base_url=tenants.url + "/v1", max_retries=0)
    fake.script(stream(calls=["secret = 'alice only'"]), stream(text="ok"))
    first = alice.responses.create(model="m", input="x", tools=CI)
    (call,) = checks.code_calls_well_formed(first.model_dump()["output"])
    container = call["container_id"]
    tools = [{"type": "code_interpreter", "container": container}]
    with pytest.raises(openai.NotFoundError):
        bob.responses.create(model="m", input="print(secret)", tools=tools)  # type: ignore[arg-type]
    with pytest.raises(openai.NotFoundError):
        bob.responses.create(model="m", input="go on", previous_response_id=first.id)
    fake.script(stream(calls=["secret"]), stream(text="ok"))
    again = alice.responses.create(model="m", input="y", tools=tools)  # type: ignore[arg-type]
    (call,) = checks.code_calls_well_formed(again.model_dump()["output"])
    assert call["outputs"][-1]["logs"] == "'alice only'"
    alice.close()
    bob.close()


def test_the_key_is_not_on_the_command_line(tenants: LciServer) -> None:
    cmdline = Path(f"/proc/{tenants.process.pid}/cmdline").read_bytes()
    assert ALICE.encode() not in cmdline and BOB.encode() not in cmdline


def test_a_key_on_the_command_line_is_refused_and_help_says_where_keys_go() -> None:
    serve = [sys.executable, "-m", "engine.cli", "serve", "--port", str(free_port())]
    refused = subprocess.run(
        [*serve, "--api-key", "visible"],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode != 0
    assert "LCI_API_KEY" in refused.stderr and "--api-key-file" in refused.stderr
    helped = subprocess.run(
        [sys.executable, "-m", "engine.cli", "serve", "--help"],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "LCI_API_KEY" in helped.stdout and "--api-key-file" in helped.stdout


def test_a_keys_file_other_users_can_write_is_refused(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text(f"{ALICE}\n")
    keys.chmod(0o666)
    serve = [sys.executable, "-m", "engine.cli", "serve", "--port", str(free_port())]
    run = subprocess.run(
        [*serve, "--api-key-file", str(keys)],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2 and "writable by other users" in run.stderr, run.stderr


def test_containers_and_files_belong_to_their_key(tenants: LciServer) -> None:
    """The Containers and Files APIs are scoped like sessions: another key's container or file
    does not exist for this one, in lists or by id."""
    with client(tenants, ALICE) as alice, client(tenants, BOB) as bob:
        uploaded = alice.post(
            "/v1/files",
            files={"file": ("secret.txt", b"alice only")},
            data={"purpose": "user_data"},
        )
        assert uploaded.status_code == 200, uploaded.text
        file_id = uploaded.json()["id"]
        made = alice.post("/v1/containers", json={"name": "alice's", "file_ids": [file_id]})
        assert made.status_code == 200, made.text
        cid = made.json()["id"]
        listed = alice.get(f"/v1/containers/{cid}/files").json()["data"]
        assert [f["path"].rsplit("/", 1)[-1] for f in listed] == ["secret.txt"]
        assert bob.get("/v1/containers").json()["data"] == []
        assert bob.get("/v1/files").json()["data"] == []
        attacks = [
            bob.get(f"/v1/containers/{cid}"),
            bob.get(f"/v1/containers/{cid}/files"),
            bob.get(f"/v1/containers/{cid}/files/{listed[0]['id']}/content"),
            bob.post(f"/v1/containers/{cid}/files", json={"file_id": file_id}),
            bob.delete(f"/v1/containers/{cid}"),
            bob.get(f"/v1/files/{file_id}"),
            bob.get(f"/v1/files/{file_id}/content"),
            bob.delete(f"/v1/files/{file_id}"),
            bob.post("/v1/containers", json={"name": "steal", "file_ids": [file_id]}),
        ]
        for reply in attacks:
            assert reply.status_code == 404, (reply.request.url, reply.text)
        assert alice.get(f"/v1/files/{file_id}/content").content == b"alice only"
        assert alice.delete(f"/v1/containers/{cid}").status_code == 200


def test_a_quota_per_key(shared_fake: FakeModel, keys_file: Path) -> None:
    args = ["--api-key-file", str(keys_file)]
    env = {"LCI_MAX_SESSIONS_PER_OWNER": "1"}
    with (
        LciServer(shared_fake.base_url, args=args, env=env) as server,
        client(server, ALICE) as alice,
        client(server, BOB) as bob,
    ):
        assert alice.post("/v1/sessions").status_code == 201
        refused = alice.post("/v1/sessions")
        assert refused.status_code == 429, refused.text
        assert "quota" in refused.json()["error"]["message"]
        assert int(refused.headers["Retry-After"]) >= 1
        assert bob.post("/v1/sessions").status_code == 201  # another key has its own quota


def test_one_key_filling_the_file_store_leaves_the_others_their_share(
    shared_fake: FakeModel, keys_file: Path
) -> None:
    """The attack: alice uploads until the store is full, then bob's 5-byte upload fails, and the
    refusal tells alice how much the other keys keep."""
    args = ["--api-key-file", str(keys_file)]
    env = {"LCI_SERVER_MAX_FILE_STORE_BYTES": "4000"}
    with LciServer(shared_fake.base_url, args=args, env=env) as server:
        alice = openai.OpenAI(api_key=ALICE, base_url=server.url + "/v1", max_retries=0)
        bob = openai.OpenAI(api_key=BOB, base_url=server.url + "/v1", max_retries=0)
        bob.files.create(file=("b.txt", b"bob's"), purpose="user_data")
        for _ in range(3):
            try:
                alice.files.create(file=("a.bin", b"a" * 1500), purpose="user_data")
            except openai.APIStatusError as refused:
                assert refused.status_code == 413
                message = refused.message
                break
        else:
            pytest.fail("alice stored 4500 bytes in a 4000-byte store of two keys")
        assert "full" in message and "2000" in message  # her own quota: half the store
        assert "4000" not in message and "1505" not in message and "3005" not in message
        assert bob.files.create(file=("c.txt", b"still"), purpose="user_data").bytes == 5
        alice.close()
        bob.close()


def test_a_full_server_never_closes_another_keys_containers(
    shared_fake: FakeModel, keys_file: Path
) -> None:
    """The attack: bob asks for sessions on a full server until alice's idle containers are closed
    to make room for him, losing her variables and files."""
    args = ["--api-key-file", str(keys_file)]
    with (
        LciServer(shared_fake.base_url, args=args, env={"LCI_MAX_SESSIONS": "2"}) as server,
        client(server, ALICE) as alice,
        client(server, BOB) as bob,
    ):
        sdk = openai.OpenAI(api_key=ALICE, base_url=server.url + "/v1", max_retries=0)
        containers = []
        for _ in range(2):
            shared_fake.reset()
            shared_fake.script(stream(calls=["kept = 1"]), stream(text="ok"))
            response = sdk.responses.create(model="m", input="x", tools=CI)  # type: ignore[list-item]
            (call,) = checks.code_calls_well_formed(response.model_dump()["output"])
            containers.append(call["container_id"])
        shared_fake.reset()
        sdk.close()
        refused = bob.post("/v1/sessions")
        assert refused.status_code == 429, refused.text
        live = {s["id"] for s in alice.get("/v1/sessions").json()["sessions"]}
        assert live == set(containers)
        # her own new work may still make room among her own idle containers
        assert alice.post("/v1/sessions").status_code == 201
