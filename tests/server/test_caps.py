"""Caps that protect the host, through a real `lci serve`: past each one a 429 with Retry-After, and
room again once the holder lets go."""

from __future__ import annotations

import threading

import httpx
import pytest

from engine.config import Settings
from engine.core.manager import SessionManager
from engine.errors import CapacityExceeded
from engine.models import Limits, SessionSpec
from tests.server.helpers import FakeModel, LciServer

SMALL = {"memory_mb": 256, "disk_mb": 32}  # LciServer's limits: a session is charged 288 MB


def assert_capped(response: httpx.Response, words: str) -> None:
    assert response.status_code == 429, response.text
    assert int(response.headers["Retry-After"]) >= 1
    error = response.json()["error"]
    assert error["code"] == "capacity_exceeded"
    assert words in error["message"]


def test_session_cap(shared_fake: FakeModel) -> None:
    with (
        LciServer(shared_fake.base_url, env={"LCI_MAX_SESSIONS": "1"}) as server,
        server.client() as client,
    ):
        first = client.post("/v1/sessions").json()["id"]
        assert_capped(client.post("/v1/sessions"), "sessions are live")
        client.delete(f"/v1/sessions/{first}")
        assert client.post("/v1/sessions").status_code == 201


def test_memory_budget_across_sessions(shared_fake: FakeModel) -> None:
    with (
        LciServer(shared_fake.base_url, env={"LCI_MEMORY_BUDGET_MB": "600"}) as server,
        server.client() as client,
    ):
        ids = [client.post("/v1/sessions").json()["id"] for _ in range(2)]  # 576 MB charged
        assert_capped(client.post("/v1/sessions"), "memory budget")
        small = client.post("/v1/sessions", json={"limits": {"memory_mb": 16, "disk_mb": 1}})
        assert small.status_code == 201, small.text  # 17 MB still fits
        client.delete(f"/v1/sessions/{ids[0]}")
        assert client.post("/v1/sessions").status_code == 201


def test_concurrent_execution_cap(shared_fake: FakeModel) -> None:
    env = {"LCI_MAX_CONCURRENT_EXECUTIONS": "1", "LCI_EXECUTION_WAIT_S": "0.5"}
    with LciServer(shared_fake.base_url, env=env) as server, server.client() as client:
        first, second = (client.post("/v1/sessions").json()["id"] for _ in range(2))
        holder_done = threading.Event()

        def hold() -> None:
            with server.client() as other:
                other.post(
                    f"/v1/sessions/{first}/execute", json={"code": "import time; time.sleep(3)"}
                )
            holder_done.set()

        thread = threading.Thread(target=hold)
        thread.start()
        try:
            for _ in range(50):  # until the first cell holds the only slot
                if client.get(f"/v1/sessions/{first}").json()["state"] == "busy":
                    break
                threading.Event().wait(0.05)
            refused = client.post(f"/v1/sessions/{second}/execute", json={"code": "1 + 1"})
            assert_capped(refused, "executions are running")
        finally:
            thread.join(30)
        assert holder_done.is_set()
        ran = client.post(f"/v1/sessions/{second}/execute", json={"code": "1 + 1"}).json()
        assert ran["outcome"] == "completed"


async def test_quota_per_owner_and_release_on_failed_start(tmp_path: object) -> None:
    settings = Settings(
        state_dir=tmp_path / "state",  # type: ignore[operator]
        max_sessions_per_owner=1,
        max_sessions=2,
        subprocess_warm_pool=0,
        forkserver=False,
    )
    limits = Limits(**SMALL)
    async with SessionManager(settings) as manager:
        await manager.create(SessionSpec(limits=limits), owner="key-a")
        with pytest.raises(CapacityExceeded, match="quota") as refused:
            await manager.create(SessionSpec(limits=limits), owner="key-a")
        assert refused.value.retry_after_s
        other = await manager.create(SessionSpec(limits=limits), owner="key-b")
        await manager.close(other.id)
        await manager.create(SessionSpec(limits=limits), owner="key-b")
        assert manager.capacity.owned_by("key-b") == 1


async def test_a_failed_start_gives_its_share_back(tmp_path: object) -> None:
    settings = Settings(
        state_dir=tmp_path / "state",  # type: ignore[operator]
        max_sessions=1,
        sandbox_python="/nonexistent/python3",
        subprocess_warm_pool=0,
        forkserver=False,
    )
    async with SessionManager(settings) as manager:
        for _ in range(3):  # with its share kept, the second attempt would be a capacity error
            with pytest.raises(Exception) as failed:
                await manager.create(SessionSpec(limits=Limits(**SMALL)), owner="key-a")
            assert not isinstance(failed.value, CapacityExceeded)
            assert manager.capacity.sessions == 0
            assert manager.capacity.owned_by("key-a") == 0
