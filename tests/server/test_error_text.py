"""Error text a person can act on: broken JSON is not blamed on a parameter named after a
character position, a missing body or field is named, an upload echoes the path the listing shows."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.server.helpers import FakeModel, LciServer


@pytest.fixture(scope="module")
def server() -> Iterator[LciServer]:
    with FakeModel() as fake, LciServer(fake.base_url) as server:
        yield server


@pytest.fixture
def client(server: LciServer) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def test_broken_json(client: httpx.Client) -> None:
    response = client.post(
        "/v1/sessions", content=b'{"limits": 13', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] is None
    assert error["message"].startswith("the body is not valid JSON (at character 13")


def test_missing_body_and_fields(client: httpx.Client) -> None:
    sid = client.post("/v1/sessions").json()["id"]
    no_body = client.post(f"/v1/sessions/{sid}/execute").json()["error"]
    assert no_body == {
        "code": "invalid_request",
        "message": "a JSON body is required",
        "param": None,
    }
    no_code = client.post(f"/v1/sessions/{sid}/execute", json={}).json()["error"]
    assert (no_code["message"], no_code["param"]) == ("code: Field required", "code")
    native = client.post(
        "/api/v1/services/aigc/text-generation/generation", json={"model": "m", "input": {}}
    ).json()
    assert native["message"] == "input.messages: Field required"  # no union member class name
    client.delete(f"/v1/sessions/{sid}")


def test_upload_echoes_the_listed_path(client: httpx.Client) -> None:
    sid = client.post("/v1/sessions").json()["id"]
    workdir = client.get(f"/v1/sessions/{sid}").json()["workdir"]
    uploaded = client.post(
        f"/v1/sessions/{sid}/files",
        files={"file": ("ok.txt", b"fine")},
        data={"path": f"{workdir}/sub/ok.txt"},
    ).json()
    listed = client.get(f"/v1/sessions/{sid}/files").json()["files"]
    assert uploaded["path"] == "sub/ok.txt" == listed[0]["path"]
    client.delete(f"/v1/sessions/{sid}")
