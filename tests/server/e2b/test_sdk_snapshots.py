"""E2B's own SDK (`e2b-code-interpreter`, unchanged) forking sandboxes and taking, listing,
deleting and starting from snapshots, against a real `lci serve`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from e2b import SandboxException
from e2b_code_interpreter import Sandbox

from tests.server.helpers import LciServer


@pytest.fixture
def sandbox(e2b_env: LciServer) -> Iterator[Sandbox]:
    sbx = Sandbox.create()
    yield sbx
    sbx.kill()


def test_fork_gives_sandboxes_that_diverge(sandbox: Sandbox) -> None:
    sandbox.run_code("x = [1]")
    sandbox.files.write("f.txt", "parent")
    forks = sandbox.fork(count=2, timeout=120)
    assert len(forks) == 2
    children = [f for f in forks if isinstance(f, Sandbox)]
    assert len(children) == 2, forks
    try:
        ids = {c.sandbox_id for c in children}
        assert len(ids | {sandbox.sandbox_id}) == 3
        first, second = children
        grown = first.run_code("x.append(2)\nx")
        assert grown.text == "[1, 2]" and grown.execution_count == 2  # the count goes on
        first.files.write("f.txt", "child")
        assert second.run_code("x").text == "[1]"
        assert sandbox.run_code("x").text == "[1]"
        assert sandbox.files.read("f.txt") == "parent"
        assert second.files.read("f.txt") == "parent"
        assert second.run_code("import os\nos.getcwd()").text == "/home/user"
        assert first.get_info().template_id == sandbox.get_info().template_id
        listed = {s.sandbox_id for s in Sandbox.list().next_items()}
        assert ids <= listed
    finally:
        for child in children:
            child.kill()
    with pytest.raises(SandboxException):
        sandbox.fork(count=17)  # past lci's cap (the SDK allows 20)


def test_snapshot_seeds_new_sandboxes(sandbox: Sandbox) -> None:
    sandbox.run_code("x = 'then'\nsquare = lambda v: v * v")
    sandbox.files.write("f.txt", "then")
    snap = sandbox.create_snapshot()
    assert snap.snapshot_id.endswith(":default") and snap.names == [snap.snapshot_id]
    sandbox.run_code("x = 'now'")
    listed = sandbox.list_snapshots().next_items()
    assert [s.snapshot_id for s in listed] == [snap.snapshot_id]

    seeded = Sandbox.create(snap.snapshot_id, timeout=120)
    try:
        assert seeded.run_code("x, square(4)").text == "('then', 16)"
        assert seeded.files.read("f.txt") == "then"
        assert seeded.get_info().template_id == snap.snapshot_id
        assert sandbox.run_code("x").text == "now"
    finally:
        seeded.kill()

    assert Sandbox.delete_snapshot(snap.snapshot_id) is True
    assert Sandbox.delete_snapshot(snap.snapshot_id) is False
    assert Sandbox.list_snapshots(sandbox_id=sandbox.sandbox_id).next_items() == []
    with pytest.raises(SandboxException, match=r"404: snapshot .* was not found"):
        Sandbox.create(snap.snapshot_id)  # gone: never a fresh sandbox in its place


def test_a_name_points_at_the_newest_snapshot(sandbox: Sandbox) -> None:
    sandbox.run_code("x = 1")
    first = sandbox.create_snapshot(name="best")
    sandbox.run_code("x = 2")
    second = sandbox.create_snapshot(name="best")
    assert first.snapshot_id == second.snapshot_id
    assert len(Sandbox.list_snapshots(name="best").next_items()) == 1
    seeded = Sandbox.create(second.snapshot_id)
    try:
        assert seeded.run_code("x").text == "2"
    finally:
        seeded.kill()
    with pytest.raises(SandboxException):
        sandbox.create_snapshot(mode="filesystem")  # lci's snapshots always keep memory


def test_snapshots_go_with_their_sandbox(e2b_env: LciServer) -> None:
    sandbox = Sandbox.create()
    sandbox.run_code("x = 1")
    snap = sandbox.create_snapshot()
    sandbox.kill()
    assert Sandbox.list_snapshots().next_items() == []
    with pytest.raises(SandboxException, match=r"404: snapshot .* was not found"):
        Sandbox.create(snap.snapshot_id)
    assert Sandbox.delete_snapshot(snap.snapshot_id) is False
