"""Snapshots and forks through the HTTP client, sync and async, against a real `lci serve`."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine import AsyncClient, Client, SnapshotNotFound
from engine.errors import SessionNotFound
from tests.cli.helpers import lci
from tests.server.helpers import LciServer


def test_sync_client_snapshots_and_forks(server: LciServer) -> None:
    with Client(server.url, api_key=server.api_key) as client:
        session = client.create_session()
        try:
            session.execute("x = 1\nopen('f.txt', 'w').write('one')")
            snap = session.snapshot()
            assert snap.session_id == session.id and snap.executions == 1
            session.execute("x = 2\nopen('f.txt', 'w').write('two')")
            assert [s.id for s in session.list_snapshots()] == [snap.id]
            assert session.restore(snap.id).id == snap.id
            assert session.execute("x").result_text == "1"
            assert session.read_file("f.txt") == b"one"

            ((child, result),) = session.fork()
            assert child.id == result.session.id != session.id and "x" in result.kept
            child.execute("x = 'child'")
            assert session.execute("x").result_text == "1"
            assert client.session(child.id).execute("x").result_text == "'child'"
            child.close()

            session.delete_snapshot(snap.id)
            assert session.list_snapshots() == []
            with pytest.raises(SnapshotNotFound):
                session.restore(snap.id)
        finally:
            session.close()
        with pytest.raises(SessionNotFound):
            session.snapshot()


async def test_async_client_snapshots_and_forks(server: LciServer) -> None:
    async with AsyncClient(server.url, api_key=server.api_key) as client:
        session = await client.create_session()
        try:
            await session.execute("x = 'then'")
            snap = await session.snapshot()
            await session.execute("x = 'now'")
            forks = await session.fork(2, snapshot_id=snap.id)
            assert len(forks) == 2
            for child, result in forks:
                assert result.session.id == child.id
                assert (await child.execute("x")).result_text == "'then'"
                await child.close()
            assert (await session.execute("x")).result_text == "'now'"
            await session.restore(snap.id)
            assert (await session.execute("x")).result_text == "'then'"
            await session.delete_snapshot(snap.id)
            with pytest.raises(SnapshotNotFound):
                await session.delete_snapshot(snap.id)
        finally:
            await session.close()


def test_exec_snapshot_each_cell_in_a_served_session(server: LciServer, tmp_path: Path) -> None:
    """`lci exec --server --session --snapshot-each-cell`: the failing cell is undone, and the
    session keeps no snapshot of lci exec's afterwards."""
    key = {"LCI_API_KEY": server.api_key or ""}
    with Client(server.url, api_key=server.api_key) as client:
        session = client.create_session()
        try:
            session.execute("x = 'before'")
            args = ["exec", "--server", server.url, "--session", session.id]
            done = lci(
                *args,
                "--snapshot-each-cell",
                "x = 'broken'; 1 / 0",
                "print(x)",
                state_dir=tmp_path,
                env=key,
            )
            assert done.returncode == 1, done.stderr
            assert "[cell 1 failed" in done.stderr and done.stdout.strip() == "before"
            assert session.list_snapshots() == []
            assert session.execute("x").result_text == "'before'"
        finally:
            session.close()
