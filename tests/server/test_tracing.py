"""Traces of a real server (uvicorn on 127.0.0.1, in this process so that an in-memory exporter
collects its spans): one trace per request, whose id is the response's x-request-id, with spans
for the session start, each execution, file transfers, and each model round with its upstream call
and tool calls beneath."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import uvicorn
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from engine.config import Settings
from engine.models import BackendName
from engine.observability import tracing
from engine.server.app import create_app
from engine.server.runtime.options import ServerOptions
from tests.conftest import TEST_LIMITS
from tests.server.helpers import FakeModel, free_port, stream


@pytest.fixture
def traced(fake: FakeModel, tmp_path: Path) -> Iterator[tuple[str, tracing.Tracing]]:
    installed = tracing.install(exporter=InMemorySpanExporter())
    port = free_port()
    settings = Settings(
        backend=BackendName.SUBPROCESS,
        state_dir=tmp_path / "state",
        limits=TEST_LIMITS,
        llm_base_url=fake.base_url,
        llm_model="fake-model",
    )
    app = create_app(settings, ServerOptions(port=port))
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", loop="asyncio")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", installed
    finally:
        server.should_exit = True
        thread.join(30)
        installed.close()


def tree(exporter: InMemorySpanExporter, trace_id: str) -> dict[int | None, list[ReadableSpan]]:
    """The spans of one trace by their parent's span id (None: the root)."""
    children: dict[int | None, list[ReadableSpan]] = {}
    for span in exporter.get_finished_spans():
        assert span.context is not None
        if format(span.context.trace_id, "032x") == trace_id:
            parent = span.parent.span_id if span.parent is not None else None
            children.setdefault(parent, []).append(span)
    return children


def root_and_children(
    exporter: InMemorySpanExporter, trace_id: str
) -> tuple[ReadableSpan, dict[int | None, list[ReadableSpan]]]:
    # The request's span ends once its response is sent, which the client may see first.
    deadline = time.monotonic() + 10
    while None not in (spans := tree(exporter, trace_id)) and time.monotonic() < deadline:
        time.sleep(0.02)
    (root,) = spans[None]
    assert root.name == "http.request"
    return root, spans


def names_under(spans: dict[int | None, list[ReadableSpan]], parent: ReadableSpan) -> list[str]:
    assert parent.context is not None
    return sorted(s.name for s in spans.get(parent.context.span_id, []))


@pytest.mark.slow
def test_each_request_is_a_trace_with_the_spans_of_its_work(
    traced: tuple[str, tracing.Tracing], fake: FakeModel
) -> None:
    url, installed = traced
    with httpx.Client(base_url=url, timeout=60) as client:
        created = client.post("/v1/sessions", json={})
        sid = created.json()["id"]
        ran = client.post(f"/v1/sessions/{sid}/execute", json={"code": "1+1"})
        up = client.post(f"/v1/sessions/{sid}/files", files={"file": ("a.txt", b"hello")})
        client.delete(f"/v1/sessions/{sid}")
    fake.script(stream(calls=["1+1"]), stream(text="2"))
    with openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0) as sdk:
        chat = sdk.chat.completions.with_raw_response.create(
            model="fake-model",
            messages=[{"role": "user", "content": "add"}],
            extra_body={"enable_code_interpreter": True},
        )
    installed.provider.force_flush()
    exporter = installed.exporter

    root, spans = root_and_children(exporter, created.headers["x-request-id"])
    assert names_under(spans, root) == ["session.start"]
    assert root.attributes is not None and root.attributes["http.status_code"] == 201
    root, spans = root_and_children(exporter, ran.headers["x-request-id"])
    (execution,) = spans[root.context.span_id]  # type: ignore[union-attr]
    assert execution.name == "execution"
    assert execution.attributes is not None
    assert execution.attributes["lci.outcome"] == "completed"
    assert execution.attributes["lci.session_id"] == sid
    root, spans = root_and_children(exporter, up.headers["x-request-id"])
    assert names_under(spans, root) == ["file.upload"]

    root, spans = root_and_children(exporter, chat.headers["x-request-id"])
    assert names_under(spans, root) == ["model.round", "model.round", "tool.call"]
    for model_round in (s for s in spans[root.context.span_id] if s.name == "model.round"):  # type: ignore[union-attr]
        assert names_under(spans, model_round) == ["upstream.call"]
    (call,) = (s for s in spans[root.context.span_id] if s.name == "tool.call")  # type: ignore[union-attr]
    assert names_under(spans, call) == ["execution", "session.start"]
