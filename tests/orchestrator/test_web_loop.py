"""The loop with web tools: a scripted model searches (fake SearXNG), reads a page (over real HTTP
on 127.0.0.1, allow-listed) and computes with code in one conversation; repeats, the page limit,
calls written in text, and web tools that were not enabled."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from engine.orchestrator import (
    AddressGuard,
    FetchLimits,
    Orchestrator,
    PageFetcher,
    SearxngSearch,
    UpstreamClient,
    WebTools,
)
from engine.session_runner import SessionRunner
from tests.fake_llm import Call, FakeLLM, Reply, last_tool_text, stream
from tests.fake_web import FakeWeb, hit
from tests.orchestrator.conftest import of_type, run_loop

QUESTION = [{"role": "user", "content": "How much higher than the average range was the record?"}]


@pytest.fixture
def web() -> Iterator[FakeWeb]:
    with FakeWeb() as fake:
        fake.default_results = [
            hit("Tide tables of Port Example", fake.url("/pages/article"), "Highest tide ..."),
            hit("Harbour office", "https://harbour.example/", "Opening hours"),
        ]
        yield fake


def web_tools(web: FakeWeb, **kw: Any) -> WebTools:
    fetcher = PageFetcher(AddressGuard(["127.0.0.1"]), FetchLimits(timeout_s=5))
    return WebTools(SearxngSearch(web.base_url), fetcher, **kw)


@pytest.fixture
def orchestrator(upstream: UpstreamClient, runner: SessionRunner, web: FakeWeb) -> Orchestrator:
    return Orchestrator(upstream, runner, model="fake-model", web=web_tools(web))


def search(query: str) -> Call:
    return Call(name="web_search", arguments=json.dumps({"query": query}))


def extract(url: str) -> Call:
    return Call(name="web_extractor", arguments=json.dumps({"url": url}))


def tool_names(body: dict[str, Any]) -> list[str]:
    return [tool["function"]["name"] for tool in body.get("tools") or []]


@pytest.mark.parametrize("flavor", ["vllm", "llamacpp", "ollama"])
async def test_search_then_read_then_compute(
    orchestrator: Orchestrator, llm: FakeLLM, web: FakeWeb, flavor: Any
) -> None:
    page = web.url("/pages/article")

    def after_search(body: dict[str, Any]) -> Any:
        text = last_tool_text(body)
        assert "[1] Tide tables of Port Example" in text and f"URL: {page}" in text
        return stream(calls=[extract(page)], flavor=flavor)

    def after_page(body: dict[str, Any]) -> Any:
        text = last_tool_text(body)
        assert text.startswith("Title: Tide tables of Port Example\nURL: ")
        assert "417 centimetres" in text and "Cookie settings" not in text
        return stream(calls=["417 - 312"], flavor=flavor)

    def after_code(body: dict[str, Any]) -> Any:
        assert "105" in last_tool_text(body)
        return stream(text="The record was 105 cm above the average range.", flavor=flavor)

    llm.script(
        stream(calls=[search("port example highest tide")], flavor=flavor),
        Reply(after_search),
        Reply(after_page),
        Reply(after_code),
    )
    events = await run_loop(
        orchestrator, QUESTION, web_tools=["web_search", "web_extractor"], max_rounds=6
    )
    llm.check()
    assert tool_names(llm.requests[0].body) == ["code_interpreter", "web_search", "web_extractor"]
    prompt = llm.requests[0].body["messages"][0]["content"]
    assert "`web_search`" in prompt and "`web_extractor`" in prompt
    kinds = [e.type for e in events if e.type in ("web_call", "web_result", "execution_result")]
    assert kinds == ["web_call", "web_result", "web_call", "web_result", "execution_result"]
    searched, read = of_type(events, "web_result")
    assert (searched.tool, searched.status, searched.query) == (
        "web_search",
        "completed",
        "port example highest tide",
    )
    assert [s.url for s in searched.sources] == [page, "https://harbour.example/"]
    assert (read.tool, read.status, read.url) == ("web_extractor", "completed", page)
    assert read.sources[0].title == "Tide tables of Port Example"
    assert (
        of_type(events, "code_start")[0].call_id == of_type(events, "execution_result")[0].call_id
    )
    final = events[-1]
    assert final.type == "final" and "105 cm" in final.text and final.executions == 1
    assert len(web.requested("/search")) == 1 and len(web.requested("/pages/article")) == 1


async def test_web_tools_not_enabled_are_neither_offered_nor_run(
    orchestrator: Orchestrator, llm: FakeLLM, web: FakeWeb
) -> None:
    llm.script(stream(calls=[search("anything")]), stream(text="I cannot search."))
    events = await run_loop(orchestrator, QUESTION)
    assert tool_names(llm.requests[0].body) == ["code_interpreter"]
    assert "web_search" not in llm.requests[0].body["messages"][0]["content"]
    assert "no tool named 'web_search'" in last_tool_text(llm.requests[1].body)
    assert not of_type(events, "web_call") and web.requested("/search") == []


async def test_a_repeated_search_is_answered_without_searching_again(
    orchestrator: Orchestrator, llm: FakeLLM, web: FakeWeb
) -> None:
    llm.script(
        stream(calls=[search("Port Example tides")]),
        stream(calls=[search("port  example TIDES")]),
        Reply(lambda body: stream(text="done" if "not run again" in last_tool_text(body) else "")),
    )
    events = await run_loop(orchestrator, QUESTION, web_tools=["web_search"])
    llm.check()
    statuses = [e.status for e in of_type(events, "web_result")]
    assert statuses == ["completed", "repeated"]
    assert [e.runs for e in of_type(events, "web_call")] == [True, False]
    assert len(web.requested("/search")) == 1


async def test_the_page_limit_of_a_request(
    upstream: UpstreamClient, runner: SessionRunner, llm: FakeLLM, web: FakeWeb
) -> None:
    orchestrator = Orchestrator(upstream, runner, "fake-model", web=web_tools(web, max_pages=1))
    web.pages["other"] = ("text/plain", b"Another page.")
    llm.script(
        stream(calls=[extract(web.url("/pages/article")), extract(web.url("/pages/other"))]),
        stream(text="enough"),
    )
    events = await run_loop(orchestrator, QUESTION, web_tools=["web_extractor"])
    assert [e.status for e in of_type(events, "web_result")] == ["completed", "limit"]
    assert "at most 1 pages" in of_type(events, "web_result")[1].output
    assert web.requested("/pages/other") == []


async def test_failures_go_back_to_the_model(
    orchestrator: Orchestrator, llm: FakeLLM, web: FakeWeb
) -> None:
    llm.script(
        stream(
            calls=[extract("http://localhost:9/private"), Call(name="web_search", arguments="{}")]
        ),
        stream(text="Neither worked."),
    )
    events = await run_loop(orchestrator, QUESTION, web_tools=["web_search", "web_extractor"])
    refused, unreadable = of_type(events, "web_result")
    assert refused.status == "failed" and "loopback" in refused.output
    assert unreadable.status == "invalid" and '"query"' in unreadable.output
    assert events[-1].type == "final"


async def test_a_call_written_in_text_runs(
    orchestrator: Orchestrator, llm: FakeLLM, web: FakeWeb
) -> None:
    text = '<tool_call>{"name": "web_search", "arguments": {"query": "tides"}}</tool_call>'
    llm.script(stream(text=text), stream(text="Found it."))
    events = await run_loop(orchestrator, QUESTION, web_tools=["web_search"])
    assert [e.status for e in of_type(events, "web_result")] == ["completed"]
    assert web.requested("/search?q=tides")


async def test_the_request_deadline_bounds_a_web_call(
    upstream: UpstreamClient, runner: SessionRunner, llm: FakeLLM, web: FakeWeb
) -> None:
    # The page would take 5 s and the fetch may take 30: the request's 1.5 s deadline wins.
    fetcher = PageFetcher(AddressGuard(["127.0.0.1"]), FetchLimits(timeout_s=30))
    orchestrator = Orchestrator(upstream, runner, "fake-model", web=WebTools(None, fetcher))
    llm.script(stream(calls=[extract(web.url("/slow"))]), stream(text="unused"))
    started = time.monotonic()
    events = await run_loop(orchestrator, QUESTION, web_tools=["web_extractor"], deadline_s=1.5)
    assert time.monotonic() - started < 4
    assert events[-1].type == "error" and events[-1].code == "deadline_exceeded"
    assert [e.type for e in events if e.type.startswith("web")] == ["web_call"]
