"""What the E2B tests share: the SDKs pointed at the session's `lci serve`."""

from __future__ import annotations

import pytest

from tests.server.conftest import API_KEY
from tests.server.helpers import LciServer


@pytest.fixture
def e2b_env(server: LciServer, monkeypatch: pytest.MonkeyPatch) -> LciServer:
    monkeypatch.setenv("E2B_API_URL", server.url)
    monkeypatch.setenv("E2B_SANDBOX_URL", server.url)
    monkeypatch.setenv("E2B_API_KEY", API_KEY)
    monkeypatch.delenv("E2B_DEBUG", raising=False)
    return server
