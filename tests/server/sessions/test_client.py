"""The HTTP client (sync and async) and `lci exec --server` against a real `lci serve`."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from engine import AsyncClient, Client, Outcome, SessionBusy, SessionNotFound
from engine.errors import BadParameter, FileNotFound, LCIError, ServerUnavailable, Unauthorized
from engine.models import DisplayOutput, OutputItem
from tests.cli.helpers import SPACED_PRINTS, assert_live, lci, timed_lines
from tests.server.helpers import FakeModel, LciServer


@pytest.fixture(scope="module")
def server() -> Iterator[LciServer]:
    with FakeModel() as fake, LciServer(fake.base_url) as server:
        yield server


def test_sync_client(server: LciServer) -> None:
    with Client(server.url) as client:
        session = client.create_session(limits={"timeout_s": 60})  # a plot on a busy machine
        assert session.info().limits.timeout_s == 60
        assert session.execute("x = 6 * 7\nx").result_text == "42"
        arrivals: list[float] = []
        displays: list[DisplayOutput] = []
        started = time.monotonic()
        execution = session.execute(
            SPACED_PRINTS + "\nimport matplotlib.pyplot as plt\nplt.plot([1])\nplt.show()",
            on_stdout=lambda text: arrivals.append(time.monotonic() - started),
            on_display=displays.append,
        )
        assert execution.stdout == "tick 0\ntick 1\ntick 2\n"
        assert arrivals[-1] - arrivals[0] > 1.2, arrivals  # streamed, not at the end
        assert displays and displays[0].image == execution.images[0]
        assert execution.execution_count == 2

        info = session.write_file("sub/data.csv", b"a\n1\n")
        assert (info.path, info.size) == ("sub/data.csv", 4)
        assert [f.path for f in session.list_files()] == ["sub/data.csv"]
        assert session.read_file("sub/data.csv") == b"a\n1\n"
        workdir = session.info().workdir  # absolute paths inside it work as well
        assert session.read_file(f"{workdir}/sub/data.csv") == b"a\n1\n"
        assert session.write_file(f"{workdir}/two words.txt", b"s").path == "two words.txt"
        assert session.read_file("two words.txt") == b"s"
        with pytest.raises(FileNotFound):
            session.read_file("nope.txt")

        attached = client.session(session.id)
        assert attached.execute("x").result_text == "42"
        assert session.id in [s.id for s in client.list_sessions()]
        session.close()
        with pytest.raises(SessionNotFound):
            client.session(session.id)
        with pytest.raises(BadParameter) as bad:
            client.create_session(limits={"memory_mb": 1})
        assert bad.value.param


def test_busy_is_the_engines_exception(server: LciServer) -> None:
    with Client(server.url) as client:
        session = client.create_session()
        running = threading.Thread(target=session.execute, args=("import time; time.sleep(2)",))
        running.start()
        time.sleep(0.5)
        with pytest.raises(SessionBusy):
            session.execute("1")
        running.join()
        assert session.execute("1", wait=True).outcome is Outcome.COMPLETED
        session.close()


async def test_async_client(server: LciServer) -> None:
    async with AsyncClient(server.url) as client:
        session = await client.create_session()
        items: list[OutputItem] = []
        execution = await session.execute("print('a')\n1 + 1", on_output=items.append)
        assert execution.result_text == "2" and [i.type for i in items][-1] == "result"
        assert {i.type for i in items[:-1]} == {"stream"}  # "a" and "\n" may come apart
        timed_out = await session.execute("import time\ntime.sleep(10)", timeout_s=0.5)
        assert timed_out.outcome is Outcome.INTERRUPTED
        await session.write_file("f.txt", b"hi")
        assert await session.read_file("f.txt") == b"hi"
        both = await asyncio.gather(
            session.execute("1", wait=True), session.execute("2", wait=True)
        )
        assert sorted(e.result_text or "" for e in both) == ["1", "2"]
        await session.close()


def test_exec_in_a_new_server_session(server: LciServer, tmp_path: Path) -> None:
    data = tmp_path / "in.txt"
    data.write_text("from the host")
    done = lci(
        "exec", "--server", server.url, "--put", str(data), "--memory-mb", "200",
        "import resource\nopen('in.txt').read()", "--get", "in.txt:" + str(tmp_path / "back.txt"),
        state_dir=tmp_path / "state",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "'from the host'" in done.stdout
    assert (tmp_path / "back.txt").read_text() == "from the host"
    sessions = httpx.get(server.url + "/v1/sessions").json()["sessions"]
    assert sessions == [] or all(s["limits"]["memory_mb"] != 200 for s in sessions)  # closed


def test_exec_attaches_to_a_live_session(server: LciServer, tmp_path: Path) -> None:
    with Client(server.url) as client:
        session = client.create_session()
        first = lci(
            "exec", "--server", server.url, "--session", session.id, "x = 41", state_dir=tmp_path
        )
        second = lci(
            "exec", "--server", server.url, "--session", session.id, "x + 1", state_dir=tmp_path
        )
        assert first.returncode == second.returncode == 0, first.stderr + second.stderr
        assert second.stdout.strip() == "42"
        assert session.execute("x").result_text == "41"  # the session outlived both commands
        live = list(timed_lines("exec", "--server", server.url, "--session", session.id,
                                SPACED_PRINTS, state_dir=tmp_path))  # fmt: skip
        assert_live(live)
        session.close()
    gone = lci("exec", "--server", server.url, "--session", session.id, "1", state_dir=tmp_path)
    assert gone.returncode == 2 and gone.stderr == f"lci exec: no session {session.id!r}\n"
    limits = lci(
        "exec", "--server", server.url, "--session", "x", "--timeout", "3", "1", state_dir=tmp_path
    )
    assert limits.returncode == 2 and "--timeout" in limits.stderr


def test_exec_with_no_server_there(tmp_path: Path) -> None:
    done = lci("exec", "--server", "http://127.0.0.1:9", "1", state_dir=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("lci exec: --server http://127.0.0.1:9: ")
    assert "Traceback" not in done.stderr


def test_keys_come_from_the_environment(tmp_path: Path) -> None:
    with FakeModel() as fake, LciServer(fake.base_url, api_key="sesame") as server:
        with Client(server.url, api_key="sesame") as client:
            assert client.list_sessions() == []
        with Client(server.url, api_key="wrong") as client, pytest.raises(Unauthorized):
            client.create_session()
        keyed = lci(
            "exec", "--server", server.url, "6 * 7", state_dir=tmp_path,
            env={"LCI_API_KEY": "sesame"},
        )  # fmt: skip
        assert (keyed.returncode, keyed.stdout) == (0, "42\n"), keyed.stderr
        keyless = lci("exec", "--server", server.url, "6 * 7", state_dir=tmp_path)
        assert keyless.returncode == 2 and keyless.stderr.startswith("lci exec: ")
        assert "Traceback" not in keyless.stderr


def test_a_server_that_goes_away_is_the_engines_exception() -> None:
    with FakeModel() as fake:
        server = LciServer(fake.base_url)
        try:
            client = Client(server.url)
            session = client.create_session()
            running: list[BaseException] = []

            def long_cell() -> None:
                try:
                    session.execute("import time\ntime.sleep(60)", on_output=lambda item: None)
                except BaseException as exc:  # what the stopped server makes of it
                    running.append(exc)

            thread = threading.Thread(target=long_cell)
            thread.start()
            time.sleep(1.5)
            server.stop()
            thread.join(30)
            assert running and isinstance(running[0], LCIError), running
            with pytest.raises(ServerUnavailable, match=f"lci server {server.url}") as caught:
                session.info()
            assert isinstance(caught.value.__cause__, httpx.ConnectError)
            client.close()
        finally:
            server.close()


def test_a_dropped_connection_is_the_engines_exception() -> None:
    # A listener that accepts and hangs up without an answer: httpx's RemoteProtocolError.
    with socket.create_server(("127.0.0.1", 0)) as listener:

        def hang_up() -> None:
            connection, _ = listener.accept()
            connection.recv(65536)
            connection.close()

        thread = threading.Thread(target=hang_up, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        with Client(url) as client, pytest.raises(ServerUnavailable) as caught:
            client.list_sessions()
        assert isinstance(caught.value.__cause__, httpx.RemoteProtocolError)
        thread.join(10)
