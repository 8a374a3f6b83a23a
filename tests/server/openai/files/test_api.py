"""OpenAI's Files API with the real `openai` SDK: upload with a purpose, retrieve, download, list
(paginated), delete; kept on the server's disk with a size cap; OpenAI's error shapes."""

from __future__ import annotations

import io
from pathlib import Path

import openai
import pytest

from tests.server.helpers import FakeModel, LciServer


def test_upload_retrieve_download_list_delete(server: LciServer) -> None:
    client = server.openai()
    uploaded = client.files.create(file=("data.csv", b"a,b\n1,2\n"), purpose="user_data")
    assert uploaded.id.startswith("file-") and uploaded.object == "file"
    assert (uploaded.filename, uploaded.bytes, uploaded.purpose) == ("data.csv", 8, "user_data")
    assert client.files.retrieve(uploaded.id) == uploaded
    assert client.files.content(uploaded.id).content == b"a,b\n1,2\n"
    listed = [f.id for f in client.files.list()]
    assert uploaded.id in listed
    only = client.files.list(purpose="assistants")
    assert uploaded.id not in [f.id for f in only]
    deleted = client.files.delete(uploaded.id)
    assert (deleted.id, deleted.deleted, deleted.object) == (uploaded.id, True, "file")
    with pytest.raises(openai.NotFoundError) as caught:
        client.files.retrieve(uploaded.id)
    assert caught.value.body["type"] == "invalid_request_error"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        client.files.content(uploaded.id)
    with pytest.raises(openai.NotFoundError):
        client.files.delete(uploaded.id)


def test_list_is_paginated_like_openai(server: LciServer) -> None:
    client = server.openai()
    ids = [client.files.create(file=(f"p{i}.txt", b"x"), purpose="assistants").id for i in range(3)]
    try:
        first = client.files.list(limit=2, order="asc", purpose="assistants")
        mine = [f.id for f in first.data]
        assert first.has_more is True and len(mine) == 2
        everything = [f.id for f in client.files.list(limit=2, order="asc", purpose="assistants")]
        assert [i for i in everything if i in ids] == ids  # the SDK follows `after` page by page
        newest = client.files.list(limit=1, order="desc", purpose="assistants")
        assert newest.data[0].id == ids[-1]
        with server.client() as raw:
            body = raw.get("/v1/files", params={"limit": 2, "order": "asc"}).json()
            assert body["object"] == "list"
            assert body["first_id"] == body["data"][0]["id"]
            assert body["last_id"] == body["data"][-1]["id"]
            bad = raw.get("/v1/files", params={"after": "file-nope"})
            assert bad.status_code == 400 and bad.json()["error"]["param"] == "after"
    finally:
        for file_id in ids:
            client.files.delete(file_id)


def test_bad_uploads_are_refused_with_openai_errors(server: LciServer) -> None:
    client = server.openai()
    with pytest.raises(openai.BadRequestError) as caught:
        client.files.create(file=("x.txt", b"x"), purpose="nonsense")  # type: ignore[arg-type]
    assert caught.value.body["param"] == "purpose"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as caught:
        client.files.create(file=("..", b"x"), purpose="user_data")
    assert caught.value.body["param"] == "file"  # type: ignore[index]
    too_big = io.BytesIO(b"x" * (1024 * 1024 + 1))  # the fixture's upload cap is 1 MiB
    with pytest.raises(openai.APIStatusError) as caught:
        client.files.create(file=("big.bin", too_big), purpose="user_data")
    assert caught.value.status_code == 413
    assert caught.value.body["type"] == "invalid_request_error"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as caught:
        client.files.create(
            file=("x.txt", b"x"),
            purpose="user_data",
            expires_after={"anchor": "created_at", "seconds": 5},
        )
    assert caught.value.body["param"] == "expires_after.seconds"  # type: ignore[index]
    expiring = client.files.create(
        file=("x.txt", b"x"),
        purpose="user_data",
        expires_after={"anchor": "created_at", "seconds": 3600},
    )
    assert expiring.expires_at == expiring.created_at + 3600
    client.files.delete(expiring.id)


def test_files_outlive_a_restart_and_the_store_has_a_cap(fake: FakeModel, tmp_path: Path) -> None:
    env = {"LCI_SERVER_MAX_FILE_STORE_BYTES": "3000", "LCI_STATE_DIR": str(tmp_path / "state")}
    with LciServer(fake.base_url, env=env) as first:
        kept = first.openai().files.create(file=("a.bin", b"a" * 2000), purpose="user_data")
        with pytest.raises(openai.APIStatusError) as caught:
            first.openai().files.create(file=("b.bin", b"b" * 2000), purpose="user_data")
        assert caught.value.status_code == 413
        assert "full" in caught.value.message
        first.stop()  # the same state directory, a new process: the file is still there
        with LciServer(fake.base_url, env=env) as second:
            assert second.openai().files.content(kept.id).content == b"a" * 2000
            second.openai().files.delete(kept.id)
            again = second.openai().files.create(file=("b.bin", b"b" * 2000), purpose="user_data")
            assert again.bytes == 2000
