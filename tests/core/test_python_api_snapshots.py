"""Snapshots and forks through the typed sync wrappers, and the names `engine` exports for them."""

from __future__ import annotations

import typing

import pytest

import engine
from engine import blocking
from engine.api import BlockingManager, BlockingSession
from engine.config import Settings
from engine.core.manager import SessionManager
from engine.errors import SnapshotNotFound
from engine.models import ForkResult, SnapshotInfo


def test_the_names_are_exported() -> None:
    assert engine.SnapshotInfo is SnapshotInfo and engine.ForkResult is ForkResult
    assert engine.SnapshotNotFound is SnapshotNotFound
    assert typing.get_type_hints(BlockingSession.snapshot)["return"] is SnapshotInfo
    forked = typing.get_type_hints(BlockingManager.fork)["return"]
    assert forked == list[tuple[BlockingSession, ForkResult]]


def test_sync_snapshot_restore_and_fork(settings: Settings) -> None:
    with blocking(SessionManager(settings)) as manager:
        session = manager.create()
        session.execute("x = 1\nsquare = lambda v: v * v\nopen('f.txt', 'w').write('one')")
        snap = session.snapshot()
        assert snap.session_id == session.id and snap.executions == 1
        session.execute("x = 2\nopen('f.txt', 'w').write('two')")
        assert [s.id for s in session.list_snapshots()] == [snap.id]
        assert session.restore(snap.id).id == snap.id
        assert session.execute("x, square(3)").result_text == "(1, 9)"
        assert session.read_file("f.txt") == b"one"

        ((child, result),) = manager.fork(session.id)
        assert child.id == result.session.id != session.id and "x" in result.kept
        child.execute("x = 'child'")
        assert session.execute("x").result_text == "1"
        assert {s.id for s in manager.list()} == {session.id, child.id}

        forks = manager.fork(session.id, n=2, snapshot_id=snap.id)
        assert [c.execute("x").result_text for c, _ in forks] == ["1", "1"]

        session.delete_snapshot(snap.id)
        assert session.list_snapshots() == []
        with pytest.raises(SnapshotNotFound):
            session.restore(snap.id)
