"""Signed file URLs over real HTTP: one file, one operation, until the expiry, without the API key;
and every way of bending one refused (tampered, expired, other operation, other session, other
route, paths leaving the workdir), and the secret kept safely in the state directory."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest

from tests.server.helpers import LciServer, free_port


@pytest.fixture
def client(server: LciServer) -> Iterator[httpx.Client]:
    with server.client() as http:
        yield http


def new_session(client: httpx.Client) -> str:
    reply = client.post("/v1/sessions", json={})
    assert reply.status_code == 201, reply.text
    sid: str = reply.json()["id"]
    return sid


@pytest.fixture
def sid(client: httpx.Client) -> Iterator[str]:
    session_id = new_session(client)
    yield session_id
    client.delete(f"/v1/sessions/{session_id}")


def sign(client: httpx.Client, sid: str, path: str, operation: str, **kw: Any) -> dict[str, Any]:
    body = {"path": path, "operation": operation, **kw}
    reply = client.post(f"/v1/sessions/{sid}/files/sign", json=body)
    assert reply.status_code == 200, reply.text
    signed: dict[str, Any] = reply.json()
    return signed


def error_of(reply: httpx.Response, status: int, code: str) -> str:
    assert reply.status_code == status, reply.text
    error: dict[str, Any] = reply.json()["error"]
    assert error["code"] == code
    message: str = error["message"]
    return message


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {**dict(parse_qsl(parts.query)), **changes}
    return parts._replace(query=urlencode(query)).geturl()


def test_read_and_write_without_the_key(server: LciServer, client: httpx.Client, sid: str) -> None:
    client.post(
        f"/v1/sessions/{sid}/files", files={"file": ("f", b"data")}, data={"path": "d/r.txt"}
    )
    read = sign(client, sid, "d/r.txt", "read", expires_in_s=60)
    assert read["method"] == "GET" and read["path"] == "d/r.txt"
    assert read["url"].startswith(server.url + f"/v1/signed/sessions/{sid}/files/d/r.txt?")
    assert abs(read["expires_at"] - (time.time() + 60)) < 5
    reply = httpx.get(read["url"])  # no Authorization header
    assert reply.status_code == 200 and reply.content == b"data"
    assert "r.txt" in reply.headers["content-disposition"]

    write = sign(client, sid, "up/new file.txt", "write")
    assert write["method"] == "PUT"
    put = httpx.put(write["url"], content=b"from a browser")
    assert put.status_code == 201 and put.json()["path"] == "up/new file.txt", put.text
    assert client.get(f"/v1/sessions/{sid}/files/up/new file.txt").content == b"from a browser"
    form = httpx.post(write["url"], files={"file": ("x", b"from a form")})
    assert form.status_code == 201 and form.json()["size"] == 11, form.text
    assert client.get(f"/v1/sessions/{sid}/files/up/new file.txt").content == b"from a form"
    error_of(httpx.post(write["url"], files={"other": ("x", b"?")}), 400, "invalid_request")
    workdir = client.get(f"/v1/sessions/{sid}").json()["workdir"]
    assert sign(client, sid, f"{workdir}/d/r.txt", "read")["path"] == "d/r.txt"


def test_the_other_operation_is_forbidden(client: httpx.Client, sid: str) -> None:
    client.post(f"/v1/sessions/{sid}/files", files={"file": ("f", b"keep")}, data={"path": "k.txt"})
    read = sign(client, sid, "k.txt", "read")
    assert "GET" in error_of(httpx.put(read["url"], content=b"overwritten"), 403, "forbidden")
    error_of(httpx.post(read["url"], content=b"overwritten"), 403, "forbidden")
    write = sign(client, sid, "k.txt", "write")
    assert "PUT" in error_of(httpx.get(write["url"]), 403, "forbidden")
    assert client.get(f"/v1/sessions/{sid}/files/k.txt").content == b"keep"
    # The operation is part of what is signed: relabelling the URL breaks the signature.
    relabelled = with_query(read["url"], operation="write")
    assert "invalid signature" in error_of(httpx.put(relabelled, content=b"x"), 401, "unauthorized")


def test_tampered_urls_are_refused(client: httpx.Client, sid: str) -> None:
    client.post(f"/v1/sessions/{sid}/files", files={"file": ("f", b"a")}, data={"path": "a.txt"})
    client.post(f"/v1/sessions/{sid}/files", files={"file": ("f", b"b")}, data={"path": "b.txt"})
    url = sign(client, sid, "a.txt", "read")["url"]
    signature = dict(parse_qsl(urlsplit(url).query))["signature"]
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    for tampered in (
        url.replace("/a.txt?", "/b.txt?"),
        with_query(url, signature=flipped),
        with_query(url, signature=""),
        with_query(url, expires=str(int(time.time()) + 10 * 365 * 86400)),
        url.split("?")[0],
    ):
        error_of(httpx.get(tampered), 401, "unauthorized")


def test_expired_urls_are_refused(client: httpx.Client, sid: str) -> None:
    client.post(f"/v1/sessions/{sid}/files", files={"file": ("f", b"a")}, data={"path": "a.txt"})
    url = sign(client, sid, "a.txt", "read", expires_in_s=1)["url"]
    deadline = time.monotonic() + 10
    while httpx.get(url).status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "expired" in error_of(httpx.get(url), 401, "unauthorized")
    for bad in (0, -1, 7 * 24 * 3600 + 1, "60"):
        body = {"path": "a.txt", "operation": "read", "expires_in_s": bad}
        error_of(client.post(f"/v1/sessions/{sid}/files/sign", json=body), 400, "invalid_request")


def test_a_url_opens_only_its_own_session(client: httpx.Client, sid: str) -> None:
    other = new_session(client)
    try:
        for session in (sid, other):
            files = {"file": ("f", session.encode())}
            client.post(f"/v1/sessions/{session}/files", files=files, data={"path": "s.txt"})
        url = sign(client, sid, "s.txt", "read")["url"]
        moved = url.replace(f"/sessions/{sid}/", f"/sessions/{other}/")
        assert "session" in error_of(httpx.get(moved), 401, "unauthorized")
        assert httpx.get(url).content == sid.encode()
    finally:
        client.delete(f"/v1/sessions/{other}")
    # A URL outlives nothing: once its session is closed it finds nothing.
    client.delete(f"/v1/sessions/{sid}")
    error_of(httpx.get(url), 404, "session_not_found")


def test_signatures_open_no_other_route(server: LciServer, client: httpx.Client, sid: str) -> None:
    client.post(f"/v1/sessions/{sid}/files", files={"file": ("f", b"a")}, data={"path": "a.txt"})
    query = urlsplit(sign(client, sid, "a.txt", "read")["url"]).query
    for path in (
        f"/v1/sessions/{sid}/files/a.txt",
        f"/v1/sessions/{sid}",
        f"/v1/sessions/{sid}/tree",
        "/v1/sessions",
    ):
        error_of(httpx.get(f"{server.url}{path}?{query}"), 401, "unauthorized")
    for path in (
        "/v1/signed/sessions/",
        f"/v1/signed/sessions/{sid}",
        f"/v1/signed/x/{sid}/files/a.txt",
    ):
        assert httpx.get(f"{server.url}{path}?{query}").status_code in (401, 404)
    error_of(httpx.post(f"{server.url}/v1/sessions/{sid}/files/sign", json={}), 401, "unauthorized")


def test_paths_leaving_the_workdir_are_not_signed(client: httpx.Client, sid: str) -> None:
    for path in ("../x", "/etc/passwd", "a/../../x", "", "/mnt/data"):
        reply = client.post(
            f"/v1/sessions/{sid}/files/sign", json={"path": path, "operation": "read"}
        )
        error_of(reply, 400, "file_access")
    # A link the sandbox's code planted is refused when the signed URL is used.
    reply = client.post(
        f"/v1/sessions/{sid}/execute",
        json={"code": "import os\nos.symlink('/etc/passwd', 'link')\nos.mkdir('dir')"},
    )
    assert reply.json()["outcome"] == "completed"
    error_of(httpx.get(sign(client, sid, "link", "read")["url"]), 400, "file_access")
    error_of(httpx.put(sign(client, sid, "link", "write")["url"], content=b"x"), 400, "file_access")
    error_of(
        httpx.put(sign(client, sid, "link/x", "write")["url"], content=b"x"), 400, "file_access"
    )
    error_of(httpx.get(sign(client, sid, "dir", "read")["url"]), 400, "file_access")


def test_the_secret_is_private_and_survives_a_restart() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "state"
        env = {"LCI_STATE_DIR": str(state)}
        with LciServer(None, env=env, args=["--llm-model", "demo"]):
            key = state / "url-signing.key"
            info = key.lstat()
            assert stat.S_ISREG(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
            assert info.st_size == 32
            secret = key.read_bytes()
        with LciServer(None, env=env, args=["--llm-model", "demo"]):
            assert key.read_bytes() == secret  # made once


def refused_start(state: Path) -> str:
    """What `lci serve` says when it will not start with this state directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LCI_")}
    command = [sys.executable, "-m", "engine.cli", "serve", "--port", str(free_port())]
    done = subprocess.run(
        [*command, "--backend", "subprocess", "--llm-model", "demo"],
        env={**env, "LCI_STATE_DIR": str(state)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_a_planted_secret_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o711)
    key = state / "url-signing.key"
    chosen = tmp_path / "chosen"
    chosen.write_bytes(b"k" * 32)
    os.chmod(chosen, 0o600)
    key.symlink_to(chosen)  # a secret someone else knows, planted as a link
    assert "URL secret" in refused_start(state)
    key.unlink()
    key.write_bytes(b"k" * 32)
    os.chmod(key, 0o644)  # readable by other users: it may be known
    assert "URL secret" in refused_start(state)
    os.chmod(key, 0o600)
    key.write_bytes(b"short")
    assert "URL secret" in refused_start(state)
