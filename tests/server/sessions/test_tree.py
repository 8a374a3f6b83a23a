"""The session API's workdir tree over real HTTP: list, stat, make directories, remove, move and
watch, and the attacks on each (paths leaving the workdir, links planted by the sandbox's code)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.server.helpers import LciServer, read_sse


@pytest.fixture
def client(server: LciServer) -> Iterator[httpx.Client]:
    with server.client() as http:
        yield http


@pytest.fixture
def base(client: httpx.Client) -> Iterator[str]:
    reply = client.post("/v1/sessions", json={})
    assert reply.status_code == 201, reply.text
    sid: str = reply.json()["id"]
    yield f"/v1/sessions/{sid}"
    client.delete(f"/v1/sessions/{sid}")


def error_of(reply: httpx.Response, status: int, code: str) -> str:
    assert reply.status_code == status, reply.text
    error: dict[str, Any] = reply.json()["error"]
    assert error["code"] == code
    message: str = error["message"]
    return message


def upload(client: httpx.Client, base: str, path: str, data: bytes) -> None:
    reply = client.post(f"{base}/files", files={"file": ("f", data)}, data={"path": path})
    assert reply.status_code == 201, reply.text


def run(client: httpx.Client, base: str, code: str) -> None:
    reply = client.post(f"{base}/execute", json={"code": code})
    assert reply.json()["outcome"] == "completed", reply.text


def test_make_list_stat_move_remove(client: httpx.Client, base: str) -> None:
    made = client.post(f"{base}/tree/dirs", json={"path": "a/b", "mode": 0o750})
    assert made.status_code == 201, made.text
    assert (made.json()["path"], made.json()["type"], made.json()["mode"]) == ("a/b", "dir", 0o750)
    assert client.post(f"{base}/tree/dirs", json={"path": "a/b"}).status_code == 200
    upload(client, base, "a/b/x.txt", b"hello")
    message = error_of(
        client.post(f"{base}/tree/dirs", json={"path": "a/b/x.txt"}), 400, "file_access"
    )
    assert "not a directory" in message

    listed = client.get(f"{base}/tree", params={"path": "a", "depth": 2}).json()["entries"]
    assert [(e["path"], e["type"]) for e in listed] == [("a/b", "dir"), ("a/b/x.txt", "file")]
    shallow = client.get(f"{base}/tree").json()["entries"]
    assert [e["path"] for e in shallow] == ["a"]
    error_of(client.get(f"{base}/tree", params={"depth": 0}), 400, "invalid_request")

    entry = client.get(f"{base}/tree/stat", params={"path": "a/b/x.txt"}).json()
    assert (entry["name"], entry["size"], entry["type"]) == ("x.txt", 5, "file")
    workdir = client.get(base).json()["workdir"]
    absolute = client.get(f"{base}/tree/stat", params={"path": f"{workdir}/a/b/x.txt"}).json()
    assert absolute["path"] == "a/b/x.txt"
    error_of(client.get(f"{base}/tree/stat", params={"path": "nope"}), 404, "file_not_found")

    moved = client.post(f"{base}/tree/move", json={"source": "a/b/x.txt", "destination": "c/y.txt"})
    assert moved.status_code == 200 and moved.json()["path"] == "c/y.txt", moved.text
    assert client.get(f"{base}/files/c/y.txt").content == b"hello"
    error_of(
        client.post(f"{base}/tree/move", json={"source": "a", "destination": "a/b/in"}),
        400,
        "file_access",
    )

    message = error_of(client.delete(f"{base}/tree", params={"path": "a"}), 400, "file_access")
    assert "recursive" in message
    assert client.delete(f"{base}/tree", params={"path": "a/b"}).json() == {
        "path": "a/b",
        "removed": True,
    }  # empty now
    client.post(f"{base}/tree/dirs", json={"path": "a/b/deep/er"})
    assert client.delete(f"{base}/tree", params={"path": "a", "recursive": True}).status_code == 200
    assert [e["path"] for e in client.get(f"{base}/tree").json()["entries"]] == ["c"]
    error_of(client.delete(f"{base}/tree", params={"path": "a"}), 404, "file_not_found")


def test_paths_leaving_the_workdir_are_refused(client: httpx.Client, base: str) -> None:
    for path in ("../x", "/etc", "/etc/passwd", "a/../../x", "/tmp"):
        for reply in (
            client.get(f"{base}/tree", params={"path": path}),
            client.get(f"{base}/tree/stat", params={"path": path}),
            client.post(f"{base}/tree/dirs", json={"path": path}),
            client.delete(f"{base}/tree", params={"path": path, "recursive": True}),
            client.post(f"{base}/tree/move", json={"source": path, "destination": "here"}),
            client.post(f"{base}/tree/move", json={"source": "here", "destination": path}),
            client.get(f"{base}/tree/watch", params={"path": path}),
        ):
            error_of(reply, 400, "file_access")
    for path in ("", ".", "/mnt/data"):  # the workdir itself is not removable
        error_of(client.delete(f"{base}/tree", params={"path": path}), 400, "file_access")


def test_links_planted_by_the_sandbox_are_not_followed(client: httpx.Client, base: str) -> None:
    run(
        client,
        base,
        "import os, tempfile\nvictim = tempfile.mkdtemp()\nos.makedirs(victim + '/d')\n"
        "open(victim + '/secret', 'w').write('s')\nos.symlink(victim, 'out')\n"
        "os.symlink(victim + '/secret', 'file_link')\nos.mkfifo('fifo')",
    )
    link = client.get(f"{base}/tree/stat", params={"path": "out"}).json()
    assert link["type"] == "symlink" and link["symlink_target"].startswith("/")
    assert client.get(f"{base}/tree/stat", params={"path": "fifo"}).json()["type"] == "other"
    for reply in (
        client.get(f"{base}/tree/stat", params={"path": "out/secret"}),
        client.get(f"{base}/tree", params={"path": "out"}),
        client.post(f"{base}/tree/dirs", json={"path": "out/new"}),
        client.delete(f"{base}/tree", params={"path": "out/secret"}),
        client.delete(f"{base}/tree", params={"path": "out/d", "recursive": True}),
        client.post(f"{base}/tree/move", json={"source": "out/secret", "destination": "stolen"}),
        client.post(f"{base}/tree/move", json={"source": "fifo", "destination": "out/planted"}),
        client.get(f"{base}/tree/watch", params={"path": "out"}),
    ):
        error_of(reply, 400, "file_access")
    listed = {
        e["path"]: e["type"]
        for e in client.get(f"{base}/tree", params={"depth": 5}).json()["entries"]
    }
    assert listed == {"out": "symlink", "file_link": "symlink", "fifo": "other"}
    assert client.delete(f"{base}/tree", params={"path": "out"}).status_code == 200  # the link
    run(
        client,
        base,
        "import os\nassert sorted(os.listdir(os.readlink('file_link').rsplit('/', 1)[0])) == ['d', 'secret']",
    )


def test_unknown_session(client: httpx.Client) -> None:
    error_of(client.get("/v1/sessions/nope/tree"), 404, "session_not_found")
    error_of(
        client.post("/v1/sessions/nope/tree/dirs", json={"path": "a"}), 404, "session_not_found"
    )


def test_without_the_key_nothing_opens(server: LciServer, base: str) -> None:
    for reply in (
        httpx.get(server.url + f"{base}/tree"),
        httpx.post(server.url + f"{base}/tree/dirs", json={"path": "a"}),
        httpx.delete(server.url + f"{base}/tree", params={"path": "a"}),
        httpx.get(server.url + f"{base}/tree/watch"),
    ):
        error_of(reply, 401, "unauthorized")


def test_watch_streams_changes_until_the_session_closes(
    server: LciServer, client: httpx.Client, base: str
) -> None:
    client.post(f"{base}/tree/dirs", json={"path": "w"})
    upload(client, base, "w/a.txt", b"1")
    seen: list[tuple[str, str]] = []
    with client.stream(
        "GET", f"{base}/tree/watch", params={"path": "w", "recursive": True}
    ) as reply:
        assert reply.status_code == 200 and reply.headers["content-type"].startswith(
            "text/event-stream"
        )
        events = read_sse(reply)
        first = next(e for e in events if e.fields.get("event"))
        assert (first.fields["event"], first.json()) == ("ready", {"path": "w"})
        upload(client, base, "w/sub/b.txt", b"b")
        client.post(f"{base}/tree/move", json={"source": "w/a.txt", "destination": "w/c.txt"})
        wanted = {
            ("create", "sub"),
            ("create", "sub/b.txt"),
            ("rename", "a.txt"),
            ("create", "c.txt"),
        }
        for event in events:
            name = event.fields.get("event")
            if name is None:
                continue
            assert name == event.json()["type"]
            seen.append((name, event.json()["path"]))
            if wanted <= set(seen):
                break
        with server.client() as other:
            closer = threading.Thread(target=other.delete, args=(base,))
            closer.start()
            rest = [e.fields.get("event") for e in events if e.fields.get("event")]
            closer.join()
    assert rest and rest[-1] == "error", rest  # the stream ended with the session


def test_watch_of_a_missing_directory_is_a_404(client: httpx.Client, base: str) -> None:
    error_of(client.get(f"{base}/tree/watch", params={"path": "none"}), 404, "file_not_found")
    upload(client, base, "file.txt", b"x")
    reply = client.get(f"{base}/tree/watch", params={"path": "file.txt"})
    assert reply.status_code in (400, 404), reply.text
