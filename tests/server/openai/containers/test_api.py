"""OpenAI's Containers and container files APIs with the real `openai` SDK: a container is an lci
session with a name, an expiry and `cfile_` ids for the files of its working directory."""

from __future__ import annotations

import time

import openai
import pytest

from tests.server.helpers import FakeModel, LciServer


def test_create_retrieve_list_delete(server: LciServer) -> None:
    client = server.openai()
    created = client.containers.create(
        name="analysis", expires_after={"anchor": "last_active_at", "minutes": 5}
    )
    assert created.object == "container" and created.status == "running"
    assert created.name == "analysis"
    assert created.expires_after is not None and created.expires_after.minutes == 5
    assert created.expires_after.anchor == "last_active_at"
    assert created.last_active_at is not None
    assert client.containers.retrieve(created.id).id == created.id
    with server.client() as raw:  # it is a session of the session API too
        session = raw.get(f"/v1/sessions/{created.id}").json()
        assert session["state"] == "idle"
    named = client.containers.list(name="analysis")
    assert [c.id for c in named.data] == [created.id]
    assert client.containers.delete(created.id) is None
    with pytest.raises(openai.NotFoundError) as caught:
        client.containers.retrieve(created.id)
    assert caught.value.body["type"] == "invalid_request_error"  # type: ignore[index]
    with server.client() as raw:
        assert raw.get(f"/v1/sessions/{created.id}").status_code == 404
    with pytest.raises(openai.NotFoundError):
        client.containers.delete(created.id)


def test_a_running_container_reports_what_its_sandbox_uses(server: LciServer) -> None:
    client = server.openai()
    created = client.containers.create(name="busy")
    try:
        with server.client() as raw:  # burn some CPU and write a file in the container's session
            code = "sum(i * i for i in range(3_000_000)); open('blob', 'wb').write(b'x' * 300_000)"
            ran = raw.post(f"/v1/sessions/{created.id}/execute", json={"code": code}).json()
            assert ran["error"] is None
        usage = (client.containers.retrieve(created.id).model_extra or {})["usage"]
        assert usage["cpu_s"] is None or usage["cpu_s"] > 0.05
        assert usage["memory_bytes"] is None or usage["memory_bytes"] > 1_000_000
        assert usage["disk_bytes"] >= 300_000
    finally:
        client.containers.delete(created.id)


def test_memory_limit_is_the_sandbox_memory_limit(server: LciServer) -> None:
    client = server.openai()
    created = client.containers.create(name="big", memory_limit="4g")
    try:
        assert created.memory_limit == "4g"
        assert created.expires_after is not None and created.expires_after.minutes == 20
        with server.client() as raw:
            limits = raw.get(f"/v1/sessions/{created.id}").json()["limits"]
        assert limits["memory_mb"] == 4096
    finally:
        client.containers.delete(created.id)


def test_list_is_paginated_like_openai(server: LciServer) -> None:
    client = server.openai()
    ids = [client.containers.create(name="paged").id for _ in range(3)]
    try:
        first = client.containers.list(limit=2, order="asc", name="paged")
        assert [c.id for c in first.data] == ids[:2] and first.has_more is True
        second = client.containers.list(limit=2, order="asc", name="paged", after=ids[1])
        assert [c.id for c in second.data] == ids[2:] and second.has_more is False
        walked = [c.id for c in client.containers.list(limit=1, order="desc", name="paged")]
        assert walked == ids[::-1]  # the SDK's auto-pagination follows `after`
        with server.client() as raw:
            body = raw.get("/v1/containers", params={"name": "paged", "order": "asc"}).json()
        assert (body["first_id"], body["last_id"]) == (ids[0], ids[-1])
    finally:
        for container_id in ids:
            client.containers.delete(container_id)


def test_bad_requests_get_openai_errors(server: LciServer) -> None:
    client = server.openai()
    with pytest.raises(openai.BadRequestError) as caught:
        client.containers.create(name="x", memory_limit="3g")  # type: ignore[arg-type]
    assert caught.value.body["param"] == "memory_limit"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as caught:
        client.containers.create(name="x", expires_after={"anchor": "created_at", "minutes": 1})  # type: ignore[typeddict-item]
    assert caught.value.body["param"] == "expires_after.anchor"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError) as caught:
        client.containers.create(name="x", file_ids=["file-missing"])
    assert caught.value.body["param"] == "file_ids[0]"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as caught:
        client.containers.list(limit=101)
    assert caught.value.body["param"] == "limit"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        client.containers.files.list("0123456789abcdef")


def test_container_files_upload_copy_list_download_delete(server: LciServer) -> None:
    client = server.openai()
    stored = client.files.create(file=("numbers.txt", b"1 2 3"), purpose="user_data")
    container = client.containers.create(name="files", file_ids=[stored.id])
    try:
        (copied,) = client.containers.files.list(container.id).data
        assert copied.id.startswith("cfile_") and copied.source == "user"
        assert copied.path.endswith("/numbers.txt") and copied.bytes == 5
        uploaded = client.containers.files.create(container.id, file=("up.txt", b"hello"))
        assert (uploaded.object, uploaded.container_id) == ("container.file", container.id)
        from_id = client.containers.files.create(container.id, file_id=stored.id)
        assert from_id.path.endswith("/numbers.txt")
        # The code sees both files and writes a third, which the list then shows.
        with server.client() as raw:
            run = raw.post(
                f"/v1/sessions/{container.id}/execute",
                json={"code": "open('out.txt','w').write(open('up.txt').read().upper())"},
            ).json()
            assert run["outcome"] == "completed", run
        listed = {f.path.rsplit("/", 1)[-1]: f for f in client.containers.files.list(container.id)}
        assert set(listed) == {"numbers.txt", "up.txt", "out.txt"}
        written = listed["out.txt"]
        assert written.source == "assistant" and written.bytes == 5
        again = client.containers.files.retrieve(written.id, container_id=container.id)
        assert again.id == written.id  # ids are stable while the file exists
        content = client.containers.files.content.retrieve(written.id, container_id=container.id)
        assert content.content == b"HELLO"
        assert client.containers.files.delete(uploaded.id, container_id=container.id) is None
        names = {f.path.rsplit("/", 1)[-1] for f in client.containers.files.list(container.id)}
        assert names == {"numbers.txt", "out.txt"}
        with pytest.raises(openai.NotFoundError):
            client.containers.files.retrieve(uploaded.id, container_id=container.id)
        page = client.containers.files.list(container.id, limit=1, order="asc")
        assert len(page.data) == 1 and page.has_more is True
    finally:
        client.containers.delete(container.id)
        client.files.delete(stored.id)


def test_container_file_errors(server: LciServer) -> None:
    client = server.openai()
    container = client.containers.create(name="errors")
    try:
        with pytest.raises(openai.NotFoundError) as caught:
            client.containers.files.create(container.id, file_id="file-missing")
        assert caught.value.body["param"] == "file_id"  # type: ignore[index]
        with pytest.raises(openai.BadRequestError) as caught:
            client.containers.files.create(container.id, file=("", b"x"))
        assert caught.value.body["param"] == "file"  # type: ignore[index]
        with pytest.raises(openai.NotFoundError):
            client.containers.files.content.retrieve("cfile_nope", container_id=container.id)
        with pytest.raises(openai.APIStatusError) as caught:
            client.containers.files.create(container.id, file=("big.bin", b"x" * (1 << 20)))
        assert caught.value.status_code == 413
    finally:
        client.containers.delete(container.id)


def test_a_container_whose_session_is_gone_is_expired(fake: FakeModel) -> None:
    """Expiry as OpenAI shows it: the container still answers, with status `expired`, and can no
    longer be used; deleting it forgets it."""
    with LciServer(fake.base_url, env={"LCI_IDLE_TIMEOUT_S": "0.5"}) as short:
        client = short.openai()
        created = client.containers.create(name="short-lived")
        deadline = time.monotonic() + 15
        while client.containers.retrieve(created.id).status != "expired":
            assert time.monotonic() < deadline, "the container never expired"
            time.sleep(0.2)
        expired = client.containers.retrieve(created.id)
        assert expired.name == "short-lived"
        assert [c.status for c in client.containers.list(name="short-lived")] == ["expired"]
        with pytest.raises(openai.BadRequestError) as caught:
            client.containers.files.list(created.id)
        assert "expired" in caught.value.message
        tools = [{"type": "code_interpreter", "container": created.id}]
        with pytest.raises(openai.BadRequestError) as caught:
            client.responses.create(model="m", input="x", tools=tools)  # type: ignore[arg-type]
        assert caught.value.body["param"] == "tools"  # type: ignore[index]
        assert fake.requests == []
        client.containers.delete(created.id)
        with pytest.raises(openai.NotFoundError):
            client.containers.retrieve(created.id)
