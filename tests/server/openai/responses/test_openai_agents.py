"""The openai-agents SDK's `CodeInterpreterTool` runs its code in lci: the agent's model is an
`OpenAIResponsesModel` whose client points at `lci serve`, a file uploaded with `files.create` is
given to the tool by `file_ids`, and the file the code writes comes back as a citation that
downloads through the Containers API."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import agents
import openai
import pytest

from tests.fake_llm import stream
from tests.server import checks
from tests.server.helpers import FakeModel, LciServer


@pytest.fixture(autouse=True)
def no_tracing() -> Iterator[None]:
    agents.set_tracing_disabled(True)  # traces would be sent to OpenAI
    yield


async def test_code_interpreter_tool_runs_in_lci(fake: FakeModel, server: LciServer) -> None:
    sync = server.openai()
    stored = sync.files.create(file=("prices.txt", b"10\n32\n"), purpose="user_data")
    code = (
        "total = sum(int(x) for x in open('prices.txt'))\nopen('total.txt','w').write(str(total))"
    )
    fake.script(stream(calls=[code]), stream(text="The total is in total.txt."))
    client = openai.AsyncOpenAI(
        api_key=server.api_key or "none", base_url=server.url + "/v1", max_retries=0
    )
    async with client:
        result = await _run(client, stored.id)
    fake.check()
    assert result.final_output == "The total is in total.txt."
    response = result.raw_responses[-1]
    (call,) = checks.code_calls_well_formed([i.model_dump() for i in response.output])
    assert call["code"] == code
    message = response.output[-1]
    (citation,) = message.content[0].annotations  # type: ignore[union-attr]
    assert citation.type == "container_file_citation" and citation.filename == "total.txt"
    content = sync.containers.files.content.retrieve(
        citation.file_id, container_id=citation.container_id
    )
    assert content.content == b"42"
    sync.containers.delete(citation.container_id)
    sync.files.delete(stored.id)


async def _run(client: openai.AsyncOpenAI, file_id: str) -> Any:
    tool = agents.CodeInterpreterTool(
        tool_config={
            "type": "code_interpreter",
            "container": {"type": "auto", "file_ids": [file_id]},
        }
    )
    agent = agents.Agent(
        name="analyst",
        instructions="Use the code interpreter.",
        model=agents.OpenAIResponsesModel(model="fake-model", openai_client=client),
        tools=[tool],
    )
    return await agents.Runner.run(agent, "Add up the prices.")
