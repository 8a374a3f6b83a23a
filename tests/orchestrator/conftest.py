"""Fixtures of the orchestrator tests: the fake model server (a real HTTP server), the upstream
client pointed at it, and the real code runner (SessionRunner over the core's subprocess
backend)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from engine.core.manager import SessionManager
from engine.orchestrator import LoopOptions, Orchestrator, UpstreamClient
from engine.orchestrator.events import Event
from engine.session_runner import SessionRunner
from tests.fake_llm import FakeLLM

QUESTION = [{"role": "user", "content": "What is 123 to the power 21?"}]


@pytest.fixture
def llm() -> Iterator[FakeLLM]:
    with FakeLLM() as fake:
        yield fake


@pytest.fixture
async def upstream(llm: FakeLLM) -> AsyncIterator[UpstreamClient]:
    # One SDK retry keeps the failure tests fast while still exercising the retry path.
    async with UpstreamClient(llm.base_url, max_retries=1, read_timeout_s=30) as client:
        yield client


@pytest.fixture
async def runner(manager: SessionManager) -> AsyncIterator[SessionRunner]:
    runner = SessionRunner(manager)
    yield runner
    await runner.aclose()


@pytest.fixture
def orchestrator(upstream: UpstreamClient, runner: SessionRunner) -> Orchestrator:
    return Orchestrator(upstream, runner, model="fake-model")


async def run_loop(
    orchestrator: Orchestrator,
    messages: list[dict[str, Any]] | None = None,
    conversation_id: str = "conv-1",
    **options: Any,
) -> list[Any]:
    """Every event of one run, checking the ordering contract of `events` on the way."""
    events = [
        event
        async for event in orchestrator.run(
            messages or QUESTION, conversation_id=conversation_id, options=LoopOptions(**options)
        )
    ]
    check_order(events)
    return events


def check_order(events: list[Event]) -> None:
    assert events[0].type == "round_start"
    assert [e.type for e in events].count("final") + [e.type for e in events].count("error") == 1
    assert events[-1].type in ("final", "error")
    started: list[str] = []
    completed: list[str] = []
    results: list[str] = []
    for event in events:
        if event.type == "code_start":
            started.append(event.call_id)
        elif event.type == "code_complete":
            assert event.call_id in started
            completed.append(event.call_id)
        elif event.type == "execution_result":
            assert completed and completed[-1] == event.call_id
            results.append(event.call_id)
    if events[-1].type == "final":
        assert started == completed == results


def of_type(events: list[Event], kind: str) -> list[Any]:
    return [e for e in events if e.type == kind]
