"""Responses with files, as OpenAI's code interpreter does them: `container: {"type": "auto",
"file_ids": [...], "memory_limit": ...}` copies uploaded files into a new container, and files the
code wrote are cited on the answer (`container_file_citation`) and downloadable by their citation."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.fake_llm import stream
from tests.server import checks
from tests.server.helpers import FakeModel, LciServer, sse_events

WRITE_CHART = "import json\njson.dump({'total': sum(rows)}, open('summary.json', 'w'))"


def _citations(response: Any) -> list[Any]:
    message = response.output[-1]
    assert message.type == "message"
    return list(message.content[0].annotations)


def test_uploaded_file_is_read_by_code_and_written_file_is_cited(
    fake: FakeModel, server: LciServer
) -> None:
    client = server.openai()
    stored = client.files.create(file=("rows.csv", b"3\n4\n5\n"), purpose="user_data")
    read = "rows = [int(line) for line in open('rows.csv')]\nrows"
    answer = "Saved [summary](sandbox:/workspace/summary.json)."
    fake.script(stream(calls=[read]), stream(calls=[WRITE_CHART]), stream(text=answer))
    response = client.responses.create(
        model="m",
        input="sum the rows",
        tools=[
            {
                "type": "code_interpreter",
                "container": {"type": "auto", "file_ids": [stored.id], "memory_limit": "1g"},
            }
        ],
    )
    fake.check()
    first, _ = checks.code_calls_well_formed(response.model_dump()["output"])
    assert first["outputs"][-1]["logs"] == "[3, 4, 5]"  # the uploaded file, read by the code
    container_id = first["container_id"]
    container = client.containers.retrieve(container_id)
    assert container.status == "running" and container.memory_limit == "1g"
    (citation,) = _citations(response)
    assert citation.type == "container_file_citation"
    assert (citation.container_id, citation.filename) == (container_id, "summary.json")
    text = response.output_text
    mentioned = text[citation.start_index : citation.end_index]
    assert mentioned.endswith("summary.json") and citation.start_index < citation.end_index
    downloaded = client.containers.files.content.retrieve(
        citation.file_id, container_id=citation.container_id
    )
    assert downloaded.json() == {"total": 12}
    (source,) = [
        f.source for f in client.containers.files.list(container_id) if f.id == citation.file_id
    ]
    assert source == "assistant"
    client.containers.delete(container_id)
    client.files.delete(stored.id)


def test_only_files_written_during_the_call_are_cited(fake: FakeModel, server: LciServer) -> None:
    """A continued container: files from before are not cited again; a file changed now is, and a
    file the answer does not mention is cited at the end of the text."""
    client = server.openai()
    container = client.containers.create(name="continued")
    client.containers.files.create(container.id, file=("old.txt", b"old"))
    fake.script(stream(calls=["open('new.txt', 'w').write('new')"]), stream(text="Done."))
    tools: Any = [{"type": "code_interpreter", "container": container.id}]
    response = client.responses.create(model="m", input="x", tools=tools)
    (citation,) = _citations(response)
    assert citation.filename == "new.txt"
    assert citation.start_index == citation.end_index == len("Done.")
    fake.script(stream(calls=["print('nothing written')"]), stream(text="Nothing new."))
    quiet = client.responses.create(model="m", input="x", tools=tools)
    fake.check()
    assert _citations(quiet) == []
    client.containers.delete(container.id)


def test_citations_are_streamed(fake: FakeModel, server: LciServer) -> None:
    fake.script(stream(calls=["open('plot.txt', 'w').write('x')"]), stream(text="See plot.txt"))
    body = {"model": "m", "input": "x", "tools": [{"type": "code_interpreter"}], "stream": True}
    events = [e.json() for e in sse_events(server, "/v1/responses", body, headers=server.headers)]
    fake.check()
    added = [e for e in events if e["type"] == "response.output_text.annotation.added"]
    assert len(added) == 1
    annotation = added[0]["annotation"]
    assert annotation["type"] == "container_file_citation"
    assert annotation["filename"] == "plot.txt"
    assert (annotation["start_index"], annotation["end_index"]) == (4, 12)
    done = [e for e in events if e["type"] == "response.output_item.done"][-1]["item"]
    assert done["content"][0]["annotations"] == [annotation]
    completed = events[-1]["response"]["output"][-1]["content"][0]["annotations"]
    assert completed == [annotation]
    with server.client() as raw:
        url = f"/v1/containers/{annotation['container_id']}/files/{annotation['file_id']}/content"
        assert raw.get(url).content == b"x"
        raw.delete(f"/v1/containers/{annotation['container_id']}")


def test_unknown_file_ids_are_refused_before_anything_runs(
    fake: FakeModel, server: LciServer
) -> None:
    tools: Any = [
        {"type": "code_interpreter", "container": {"type": "auto", "file_ids": ["file-nope"]}}
    ]
    with pytest.raises(openai.NotFoundError) as caught:
        server.openai().responses.create(model="m", input="x", tools=tools)
    assert caught.value.body["param"] == "tools[0].container.file_ids[0]"  # type: ignore[index]
    bad_memory: Any = [
        {"type": "code_interpreter", "container": {"type": "auto", "memory_limit": "2g"}}
    ]
    with pytest.raises(openai.BadRequestError) as caught:
        server.openai().responses.create(model="m", input="x", tools=bad_memory)
    assert caught.value.body["param"] == "tools[0].container.memory_limit"  # type: ignore[index]
    assert fake.requests == []


def test_file_ids_join_the_container_a_previous_response_left(
    fake: FakeModel, server: LciServer
) -> None:
    client = server.openai()
    fake.script(stream(calls=["kept = 1"]), stream(text="ok"))
    first = client.responses.create(model="m", input="x", tools=[{"type": "code_interpreter"}])
    stored = client.files.create(file=("late.txt", b"late"), purpose="user_data")
    fake.script(stream(calls=["kept, open('late.txt').read()"]), stream(text="ok"))
    tools: Any = [
        {"type": "code_interpreter", "container": {"type": "auto", "file_ids": [stored.id]}}
    ]
    second = client.responses.create(
        model="m", input="y", tools=tools, previous_response_id=first.id
    )
    fake.check()
    (before,) = checks.code_calls_well_formed(first.model_dump()["output"])
    (after,) = checks.code_calls_well_formed(second.model_dump()["output"])
    assert after["container_id"] == before["container_id"]
    assert after["outputs"][-1]["logs"] == "(1, 'late')"
    client.containers.delete(after["container_id"])
    client.files.delete(stored.id)
