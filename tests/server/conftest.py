"""Fixtures of the server suite: one fake model server and one `lci serve` process (with an API key)
shared by the tests, and a second server with the (cfg) switches of the conformance checklist
flipped.

Tests name the items of docs/conformance/checklist.md they cover with `@covers(...)`;
test_checklist.py proves every item is covered."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.server.helpers import FakeModel, LciServer

API_KEY = "test-key"


@pytest.fixture(scope="session")
def shared_fake() -> Iterator[FakeModel]:
    with FakeModel() as fake:
        yield fake


@pytest.fixture
def fake(shared_fake: FakeModel) -> Iterator[FakeModel]:
    shared_fake.reset()
    yield shared_fake
    shared_fake.reset()


@pytest.fixture(scope="session")
def server(shared_fake: FakeModel) -> Iterator[LciServer]:
    env = {
        "LCI_SERVER_HEARTBEAT_S": "0.3",
        "LCI_SERVER_MAX_BODY_BYTES": str(256 * 1024),
        "LCI_SERVER_MAX_UPLOAD_BYTES": str(1024 * 1024),
    }
    with LciServer(shared_fake.base_url, api_key=API_KEY, env=env) as running:
        yield running
        running.stop()
        assert "Traceback" not in running.logs(), running.logs()
        running.stop()
        assert "Traceback" not in running.logs(), running.logs()


@pytest.fixture(scope="session")
def strict_server(shared_fake: FakeModel) -> Iterator[LciServer]:
    env = {
        "LCI_SERVER_ALLOW_NON_STREAM": "false",
        "LCI_SERVER_STRICT_OPENAI_INCLUDE": "true",
        "LCI_SERVER_ON_MAX_ROUNDS": "stop",
        "LCI_SERVER_MAX_ROUNDS": "2",
        "LCI_SERVER_FORCE_THINKING": "true",
        "LCI_SERVER_UNSUPPORTED_BUILTIN_TOOLS": "error",
    }
    with LciServer(shared_fake.base_url, api_key=API_KEY, env=env) as running:
        yield running
        running.stop()
        assert "Traceback" not in running.logs(), running.logs()
