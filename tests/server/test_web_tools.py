"""web_search and web_extractor on every surface of `lci serve`, configured with a fake SearXNG
and pages on 127.0.0.1 (allow-listed): Responses `web_search_call` items and events (the real
`openai` SDK), Chat kept server-side, DashScope `tool_info`, `search_info` and `usage.plugins`; and
servers without a provider, which keep today's behaviour or refuse when strict."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fake_llm import Call, Reply, Turn, last_tool_text, stream
from tests.fake_web import FakeWeb, hit
from tests.server.conftest import API_KEY
from tests.server.helpers import FakeModel, LciServer, sse_events

QUESTION = "How much higher than the average tidal range was the record at Port Example?"
ANSWER = "The record was 105 cm above the average range."
TOOLS = [{"type": "web_search"}, {"type": "web_extractor"}, {"type": "code_interpreter"}]
NATIVE = "/api/v1/services/aigc/text-generation/generation"
SEARCH_ON = {"enable_search": True, "search_options": {"search_strategy": "agent_max"}}


@pytest.fixture(scope="module")
def web() -> Iterator[FakeWeb]:
    with FakeWeb() as fake:
        fake.default_results = [
            hit("Tide tables of Port Example", fake.url("/pages/article"), "Highest tide ..."),
            hit("Harbour office", "https://harbour.example/", "Opening hours"),
        ]
        yield fake


@pytest.fixture(scope="module")
def web_server(shared_fake: FakeModel, web: FakeWeb) -> Iterator[LciServer]:
    env = {"LCI_SERVER_WEB_ALLOW_HOSTS": "127.0.0.1", "LCI_SERVER_HEARTBEAT_S": "0.3"}
    args = ["--web-search-url", web.base_url]
    with LciServer(shared_fake.base_url, api_key=API_KEY, env=env, args=args) as running:
        yield running
        running.stop()
        assert "Traceback" not in running.logs(), running.logs()


def call(name: str, **arguments: str) -> Call:
    return Call(name=name, arguments=json.dumps(arguments))


def chained(web: FakeWeb) -> list[Turn]:
    """Search, read the first hit, compute with code, answer: each turn checks what it was sent."""
    page = web.url("/pages/article")

    def after_search(body: dict[str, Any]) -> Any:
        assert f"URL: {page}" in last_tool_text(body)
        return stream(calls=[call("web_extractor", url=page)])

    def after_page(body: dict[str, Any]) -> Any:
        assert "417 centimetres" in last_tool_text(body)
        return stream(calls=["417 - 312"])

    def after_code(body: dict[str, Any]) -> Any:
        assert "105" in last_tool_text(body)
        return stream(text=ANSWER)

    return [
        stream(calls=[call("web_search", query="Port Example highest tide")]),
        Reply(after_search),
        Reply(after_page),
        Reply(after_code),
    ]


def offered(fake: FakeModel) -> list[str]:
    return [t["function"]["name"] for t in fake.chat_requests()[0].get("tools") or []]


def test_responses_items_and_counts(fake: FakeModel, web_server: LciServer, web: FakeWeb) -> None:
    fake.script(*chained(web))
    response = web_server.openai().responses.create(
        model="fake-model",
        input=QUESTION,
        tools=TOOLS,  # type: ignore[arg-type,list-item]
    )
    fake.check()
    assert offered(fake) == ["code_interpreter", "web_search", "web_extractor"]
    kinds = [item.type for item in response.output]
    assert kinds == ["web_search_call", "web_search_call", "code_interpreter_call", "message"]
    searched, read = response.output[0], response.output[1]
    assert searched.action.type == "search"  # type: ignore[union-attr]
    assert searched.action.query == "Port Example highest tide"  # type: ignore[union-attr]
    sources = [s.url for s in searched.action.sources]  # type: ignore[union-attr]
    assert sources == [web.url("/pages/article"), "https://harbour.example/"]
    assert read.action.type == "open_page"  # type: ignore[union-attr]
    assert read.action.url == web.url("/pages/article")  # type: ignore[union-attr]
    assert {searched.status, read.status} == {"completed"}  # type: ignore[union-attr]
    assert response.output_text == ANSWER
    assert response.usage is not None
    assert response.usage.x_tools == {  # type: ignore[attr-defined]
        "code_interpreter": {"count": 1},
        "web_search": {"count": 1},
        "web_extractor": {"count": 1},
    }
    assert {"type": "web_search"} in [t.model_dump(exclude_none=True) for t in response.tools]


def test_responses_stream_events(fake: FakeModel, web_server: LciServer, web: FakeWeb) -> None:
    fake.script(*chained(web))
    events = list(
        web_server.openai().responses.create(
            model="fake-model",
            input=QUESTION,
            tools=TOOLS,  # type: ignore[arg-type,list-item]
            stream=True,
        )
    )
    fake.check()
    kinds = [e.type for e in events]
    first = kinds.index("response.web_search_call.in_progress")
    assert kinds[first - 1 : first + 4] == [
        "response.output_item.added",
        "response.web_search_call.in_progress",
        "response.web_search_call.searching",
        "response.web_search_call.completed",
        "response.output_item.done",
    ]
    assert kinds.count("response.web_search_call.completed") == 2
    assert [e.sequence_number for e in events] == list(range(len(events)))
    done = [e.item for e in events if e.type == "response.output_item.done"]  # type: ignore[union-attr]
    assert [item.type for item in done][:3] == [
        "web_search_call",
        "web_search_call",
        "code_interpreter_call",
    ]
    completed = events[-1]
    assert completed.type == "response.completed"
    usage = completed.response.usage  # type: ignore[union-attr]
    assert usage.x_tools["web_search"] == {"count": 1}  # type: ignore[union-attr]


def test_a_refused_page_is_a_failed_item(
    fake: FakeModel, web_server: LciServer, web: FakeWeb
) -> None:
    fake.script(
        stream(calls=[call("web_extractor", url="http://localhost:9/admin")]),
        Reply(lambda body: stream(text="refused" if "loopback" in last_tool_text(body) else "?")),
    )
    response = web_server.openai().responses.create(
        model="fake-model",
        input=QUESTION,
        tools=TOOLS,  # type: ignore[arg-type,list-item]
    )
    assert [item.type for item in response.output] == ["web_search_call", "message"]
    assert response.output[0].status == "failed"  # type: ignore[union-attr]
    assert response.output_text == "refused"
    assert response.usage.x_tools["web_extractor"] == {"count": 1}  # type: ignore[union-attr]


def test_chat_keeps_the_web_tools_server_side(
    fake: FakeModel, web_server: LciServer, web: FakeWeb
) -> None:
    fake.script(*chained(web))
    body = {
        "model": "fake-model",
        "messages": [{"role": "user", "content": QUESTION}],
        "stream": True,
        "enable_code_interpreter": True,
        **SEARCH_ON,
    }
    events = sse_events(web_server, "/v1/chat/completions", body)
    fake.check()
    assert offered(fake) == ["code_interpreter", "web_search", "web_extractor"]
    comments = [c for e in events for c in e.comments]
    assert " keep-alive (web_search running)" in comments
    assert " keep-alive (web_extractor running)" in comments
    chunks = [e.json() for e in events if e.data and e.data != "[DONE]"]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == ANSWER
    assert "centimetres" not in json.dumps(chunks)  # the page stays on the server


def test_chat_enable_search_without_the_extractor_strategy(
    fake: FakeModel, web_server: LciServer
) -> None:
    fake.script(stream(text="No search needed."))
    body = {
        "model": "fake-model",
        "messages": [{"role": "user", "content": "hi"}],
        "enable_code_interpreter": True,
        "enable_search": True,
    }
    with web_server.client() as client:
        assert client.post("/v1/chat/completions", json=body).status_code == 200
    assert offered(fake) == ["code_interpreter", "web_search"]


@pytest.mark.parametrize("streamed", [True, False])
def test_dashscope_tool_info_search_info_and_plugins(
    fake: FakeModel, web_server: LciServer, web: FakeWeb, streamed: bool
) -> None:
    fake.script(*chained(web))
    parameters = {"enable_code_interpreter": True, "result_format": "message", **SEARCH_ON}
    request = {
        "model": "fake-model",
        "input": {"messages": [{"role": "user", "content": QUESTION}]},
    }
    request["parameters"] = parameters
    if streamed:
        events = sse_events(web_server, NATIVE, request, headers={"X-DashScope-SSE": "enable"})
        payloads = [e.json() for e in events if e.data]
        final = payloads[-1]
        sizes = [len(p["output"].get("tool_info", [])) for p in payloads]
        assert sizes[0] == 1 and sizes == sorted(sizes)  # cumulative, from the first call on
        assert "".join(p["output"]["choices"][0]["message"]["content"] for p in payloads) == ANSWER
    else:
        with web_server.client() as client:
            answer = client.post(NATIVE, json=request)
        assert answer.status_code == 200, answer.text
        final = answer.json()
        assert final["output"]["choices"][0]["message"]["content"] == ANSWER
    fake.check()
    assert final["output"]["tool_info"] == [
        {"type": "web_search", "web_search": {"query": "Port Example highest tide"}},
        {"type": "web_extractor", "web_extractor": {"url": web.url("/pages/article")}},
        {"type": "code_interpreter", "code_interpreter": {"code": "417 - 312"}},
    ]
    results = final["output"]["search_info"]["search_results"]
    assert [(r["index"], r["url"], r["site_name"]) for r in results] == [
        (1, web.url("/pages/article"), "127.0.0.1"),
        (2, "https://harbour.example/", "harbour.example"),
    ]
    assert final["usage"]["plugins"] == {
        "code_interpreter": {"count": 1},
        "search": {"count": 1},
        "web_extractor": {"count": 1},
    }


def test_without_a_provider_web_tools_are_ignored(fake: FakeModel, server: LciServer) -> None:
    fake.script(stream(text="plain answer"))
    response = server.openai().responses.create(
        model="fake-model",
        input="hi",
        tools=TOOLS,  # type: ignore[arg-type,list-item]
    )
    assert response.output_text == "plain answer"
    assert offered(fake) == ["code_interpreter"]
    assert response.usage.x_tools == {"code_interpreter": {"count": 0}}  # type: ignore[union-attr]


def test_without_a_provider_a_strict_server_refuses(strict_server: LciServer) -> None:
    with strict_server.client() as client:
        answer = client.post(
            "/v1/responses", json={"model": "m", "input": "hi", "tools": TOOLS, "stream": True}
        )
        assert answer.status_code == 400
        error = answer.json()["error"]
        assert error["param"] == "tools[0].type" and "not configured" in error["message"]
        chat = {
            "messages": [{"role": "user", "content": "hi"}],
            "stream": True,
            "enable_code_interpreter": True,
            "enable_search": True,
        }
        answer = client.post("/v1/chat/completions", json=chat)
        assert answer.status_code == 400
        assert answer.json()["error"]["param"] == "enable_search"


def test_web_search_call_items_can_be_sent_back_as_input(
    fake: FakeModel, web_server: LciServer, web: FakeWeb
) -> None:
    fake.script(*chained(web))
    client = web_server.openai()
    first = client.responses.create(model="fake-model", input=QUESTION, tools=TOOLS)  # type: ignore[arg-type,list-item]
    fake.reset()
    fake.script(stream(text="Again: 105 cm."))
    items = [item.model_dump(exclude_none=True) for item in first.output]
    again = client.responses.create(
        model="fake-model",
        input=[
            {"role": "user", "content": QUESTION},
            *items,
            {"role": "user", "content": "Again?"},
        ],  # type: ignore[list-item]
        tools=TOOLS,  # type: ignore[arg-type,list-item]
    )
    assert again.output_text == "Again: 105 cm."
    sent = fake.chat_requests()[0]["messages"]
    calls = [c["function"]["name"] for m in sent for c in m.get("tool_calls") or []]
    assert calls == ["web_search", "web_extractor", "code_interpreter"]
    # previous_response_id continues a conversation holding web calls as well
    fake.reset()
    fake.script(stream(text="Still 105 cm."))
    follow = client.responses.create(
        model="fake-model",
        input="Sure?",
        tools=TOOLS,
        previous_response_id=first.id,  # type: ignore[arg-type,list-item]
    )
    assert follow.output_text == "Still 105 cm."


def test_serve_options_and_their_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.cli.main import build_parser
    from engine.cli.serve import configure

    for name in ("LCI_SERVER_WEB_SEARCH_URL", "LCI_SERVER_WEB_ALLOW_HOSTS"):
        monkeypatch.delenv(name, raising=False)
    parser = build_parser()
    _, options = configure(parser.parse_args(["serve"]))
    assert (options.web_search_url, options.web_allow_hosts) == (None, [])  # off by default
    argv = ["serve", "--web-search-url", "http://127.0.0.1:8888"]
    argv += ["--web-allow-host", "wiki.lan", "--web-allow-host", "127.0.0.1"]
    _, options = configure(parser.parse_args(argv))
    assert options.web_search_url == "http://127.0.0.1:8888"
    assert options.web_allow_hosts == ["wiki.lan", "127.0.0.1"]
    monkeypatch.setenv("LCI_SERVER_WEB_SEARCH_URL", "http://search.lan")
    monkeypatch.setenv("LCI_SERVER_WEB_ALLOW_HOSTS", "wiki.lan, docs.lan")
    _, options = configure(parser.parse_args(["serve"]))
    assert options.web_search_url == "http://search.lan"
    assert options.web_allow_hosts == ["wiki.lan", "docs.lan"]


def test_web_tools_without_the_code_interpreter_on_a_strict_server(
    shared_fake: FakeModel, web: FakeWeb
) -> None:
    env = {"LCI_SERVER_UNSUPPORTED_BUILTIN_TOOLS": "error"}
    args = ["--web-search-url", web.base_url]
    with LciServer(shared_fake.base_url, env=env, args=args) as strict, strict.client() as client:
        answer = client.post(
            "/v1/responses", json={"input": "hi", "tools": [{"type": "web_search"}]}
        )
        assert answer.status_code == 400
        assert "beside the code_interpreter" in answer.json()["error"]["message"]
        strict.stop()


def test_a_web_call_cut_by_the_deadline_ends_incomplete(
    shared_fake: FakeModel, web: FakeWeb
) -> None:
    shared_fake.reset()
    shared_fake.script(stream(calls=[call("web_extractor", url=web.url("/slow"))]))
    env = {"LCI_SERVER_DEADLINE_S": "1.5", "LCI_SERVER_WEB_ALLOW_HOSTS": "127.0.0.1"}
    args = ["--web-search-url", web.base_url]
    with LciServer(shared_fake.base_url, env=env, args=args) as server:
        events = list(
            server.openai().responses.create(
                model="fake-model",
                input=QUESTION,
                tools=TOOLS,  # type: ignore[arg-type,list-item]
                stream=True,
            )
        )
        server.stop()
        assert "Traceback" not in server.logs(), server.logs()
    shared_fake.reset()
    done = [e.item for e in events if e.type == "response.output_item.done"]  # type: ignore[union-attr]
    assert [(item.type, item.status) for item in done] == [("web_search_call", "incomplete")]  # type: ignore[union-attr]
    assert events[-1].type == "response.failed"
