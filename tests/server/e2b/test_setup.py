"""Set-ups of E2B's SDK that go wrong quietly, and how lci answers them, with the real SDK against a
real `lci serve`: no `E2B_SANDBOX_URL` (run_code would go to E2B's cloud), URLs ending in `/v1`,
a cell past lci's time limit or the client's `timeout`, and the create options lci honours by what it does anyway (`secure`, `network`)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest
from e2b import TimeoutException
from e2b_code_interpreter import Sandbox

from tests.server.conftest import API_KEY
from tests.server.helpers import SMALL_LIMITS, FakeModel, LciServer

LIMIT_S = 3


@pytest.fixture(scope="module")
def quick(shared_fake: FakeModel) -> Iterator[LciServer]:
    """A server whose cells may run LIMIT_S seconds."""
    limits = json.dumps({**SMALL_LIMITS, "timeout_s": LIMIT_S})
    with LciServer(shared_fake.base_url, api_key=API_KEY, env={"LCI_LIMITS": limits}) as running:
        yield running
        running.stop()
        assert "Traceback" not in running.logs(), running.logs()


def e2b_env(monkeypatch: pytest.MonkeyPatch, api_url: str, sandbox_url: str | None) -> None:
    monkeypatch.setenv("E2B_API_URL", api_url)
    monkeypatch.setenv("E2B_API_KEY", API_KEY)
    monkeypatch.delenv("E2B_DEBUG", raising=False)
    monkeypatch.delenv("E2B_DOMAIN", raising=False)
    if sandbox_url is None:
        monkeypatch.delenv("E2B_SANDBOX_URL", raising=False)
    else:
        monkeypatch.setenv("E2B_SANDBOX_URL", sandbox_url)


def sessions(server: LciServer) -> int:
    return len(httpx.get(server.url + "/v1/sessions", headers=server.headers).json()["sessions"])


def test_without_the_sandbox_url_create_fails_and_says_what_to_set(
    server: LciServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SDK would build E2B's cloud URL for run_code and files (always https, from the create
    answer's domain): create() fails instead, naming the variable."""
    e2b_env(monkeypatch, server.url, None)
    with pytest.raises(
        Exception, match=r"E2B_SANDBOX_URL is not set\. Set it to the URL of the lci"
    ):
        Sandbox.create(timeout=30)
    e2b_env(monkeypatch, server.url, server.url)
    sandbox = Sandbox.create()  # set, the same answer works
    try:
        assert sandbox.run_code("6 * 7").text == "42"
        assert Sandbox.connect(sandbox.sandbox_id).run_code("1 + 1").text == "2"
    finally:
        sandbox.kill()


def test_urls_ending_in_v1_work(server: LciServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """`E2B_API_URL=http://host:port/v1`, as for lci's OpenAI surface: the SDK appends E2B's
    paths, and they reach the E2B surface (no `KeyError: 'code'` from an OpenAI-shaped 404)."""
    e2b_env(monkeypatch, server.url + "/v1", server.url + "/v1")
    sandbox = Sandbox.create(metadata={"set-up": "v1"})
    try:
        assert sandbox.run_code("x = 20\nx * 2 + 2").text == "42"
        sandbox.files.write("/home/user/a.txt", "via /v1")
        assert sandbox.files.read("a.txt") == "via /v1"
        listed = Sandbox.list(query=None).next_items()
        assert sandbox.sandbox_id in [s.sandbox_id for s in listed]
        sandbox.set_timeout(120)
        assert Sandbox.connect(sandbox.sandbox_id).is_running()
    finally:
        assert sandbox.kill()
    assert not sandbox.is_running()
    # Only E2B's paths are taken from under /v1: the OpenAI surface's own 404s are unchanged.
    other = httpx.get(server.url + "/v1/sandboxes-not", headers=server.headers)
    assert other.status_code == 404 and "error" in other.json()


def test_a_cell_past_the_time_limit_is_a_timeout_error(
    quick: LciServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    e2b_env(monkeypatch, quick.url, quick.url)
    sandbox = Sandbox.create()
    try:
        sandbox.run_code("kept = 'state'")
        execution = sandbox.run_code("import time\ntime.sleep(30)", timeout=60)
        error = execution.error
        assert error is not None and error.name == "TimeoutError", error
        assert f"time limit of {LIMIT_S} s" in error.value and "LCI_LIMITS" in error.value
        assert sandbox.run_code("kept").text == "state"  # interrupted, not restarted
    finally:
        sandbox.kill()


def test_the_clients_timeout_raises_and_interrupts_the_cell(
    quick: LciServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`run_code(timeout=N)` shorter than lci's limit: the SDK gives up with its own
    TimeoutException, as against E2B, and the cell it left is interrupted, state kept."""
    e2b_env(monkeypatch, quick.url, quick.url)
    sandbox = Sandbox.create()
    try:
        sandbox.run_code("kept = 1")
        with pytest.raises(TimeoutException, match="Execution timed out"):
            sandbox.run_code("import time\nwhile True: time.sleep(0.1)", timeout=1)
        deadline = time.monotonic() + 2 * LIMIT_S + 10
        while True:  # the abandoned cell is interrupted; the next one then runs
            try:
                assert sandbox.run_code("kept + 1", timeout=30).text == "2"
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        sandbox.kill()


def test_secure_and_network_options_lci_already_meets_are_accepted(
    server: LciServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`secure=True` and `network.allowPublicTraffic: false` ask for tokens on every sandbox
    request, which lci always requires; `network.denyOut: ["0.0.0.0/0"]` is no internet."""
    e2b_env(monkeypatch, server.url, server.url)
    before = sessions(server)
    for options in (
        {"secure": True},
        {"network": {"allow_public_traffic": False}},
        {"secure": True, "network": {"allow_public_traffic": True}},
    ):
        sandbox = Sandbox.create(**options)
        try:
            assert sandbox.traffic_access_token, options
            assert sandbox.run_code("21 * 2").text == "42", options
            # Without the sandbox's token, a request addressed to it is refused.
            bare = {"E2b-Sandbox-Id": sandbox.sandbox_id, "E2b-Sandbox-Port": "49999"}
            assert httpx.get(server.url + "/health", headers=bare).status_code == 401
        finally:
            sandbox.kill()
    offline = Sandbox.create(network={"deny_out": ["0.0.0.0/0"]})
    try:
        assert offline.get_info().allow_internet_access is False
    finally:
        offline.kill()
    with pytest.raises(Exception, match=r"network\.allowOut"):
        Sandbox.create(network={"allow_out": ["1.1.1.1"]})
    assert sessions(server) == before
