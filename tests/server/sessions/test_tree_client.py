"""`remote.tree` of the HTTP client, sync and async, against a real `lci serve`: the tree
operations, signed URLs used without the key, and a watch."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import httpx
import pytest

from engine import AsyncClient, Client
from engine.errors import FileAccessError, FileNotFound, SessionNotFound
from tests.server.helpers import FakeModel, LciServer


@pytest.fixture(scope="module")
def server() -> Iterator[LciServer]:
    with FakeModel() as fake, LciServer(fake.base_url, api_key="tree-key") as server:
        yield server


def test_sync_tree(server: LciServer) -> None:
    with Client(server.url, api_key="tree-key") as client:
        session = client.create_session()
        tree = session.tree
        assert tree.make_dir("a/b") is True and tree.make_dir("a/b") is False
        session.write_file("a/b/x.txt", b"hello")
        assert [e.path for e in tree.list("a", depth=2)] == ["a/b", "a/b/x.txt"]
        assert tree.stat("a/b/x.txt").size == 5
        assert tree.move("a/b/x.txt", "y.txt").path == "y.txt"
        with pytest.raises(FileAccessError):
            tree.remove("a")  # not empty
        tree.remove("a", recursive=True)
        assert [e.path for e in tree.list()] == ["y.txt"]
        with pytest.raises(FileNotFound):
            tree.stat("a")
        with pytest.raises(FileAccessError):
            tree.list("../..")

        read = tree.sign_url("y.txt", expires_in_s=60)
        assert read.method == "GET" and httpx.get(read.url).content == b"hello"
        write = tree.sign_url("up.txt", "write")
        assert httpx.put(write.url, content=b"up").status_code == 201
        assert session.read_file("up.txt") == b"up"
        assert httpx.get(write.url).status_code == 403  # signed to write, not to read

        # The watch starts when iterated: files keep coming until one is seen created.
        stop = threading.Event()

        def keep_writing() -> None:
            number = 0
            while not stop.wait(0.3):
                number += 1
                session.write_file(f"new-{number}.txt", b"n")

        writer = threading.Thread(target=keep_writing)
        writer.start()
        try:
            events = tree.watch(recursive=True)
            first = next(e for e in events if e.type == "create")
            assert first.path.startswith("new-") and first.entry is not None
            events.close()
        finally:
            stop.set()
            writer.join()
        session.close()
        with pytest.raises(SessionNotFound):
            tree.list()


async def test_async_tree(server: LciServer) -> None:
    async with AsyncClient(server.url, api_key="tree-key") as client:
        session = await client.create_session()
        assert await session.tree.make_dir("d") is True
        await session.write_file("d/f.txt", b"x")
        assert (await session.tree.stat("d/f.txt")).type == "file"
        assert (await session.tree.move("d", "e")).path == "e"
        assert [e.path for e in await session.tree.list(depth=2)] == ["e", "e/f.txt"]
        signed = await session.tree.sign_url("e/f.txt")
        async with httpx.AsyncClient() as anonymous:
            assert (await anonymous.get(signed.url)).content == b"x"

        async def keep_writing() -> None:
            for number in range(100):
                await asyncio.sleep(0.3)
                await session.write_file(f"e/g-{number}.txt", b"g")

        writer = asyncio.create_task(keep_writing())
        events = session.tree.watch("e")
        async for event in events:
            if event.type == "create":
                assert event.path.startswith("g-")
                break
        await events.aclose()
        writer.cancel()
        await session.tree.remove("e", recursive=True)
        assert await session.tree.list() == []
        await session.close()
