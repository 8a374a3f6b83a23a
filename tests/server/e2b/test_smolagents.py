"""smolagents' `CodeAgent` with a scripted model (the fake model server, through smolagents' own
OpenAI-compatible model class) completing a task in lci: through smolagents' E2B executor pointed
at lci's E2B endpoints, and through lci's own executor (`engine.integrations.smolagents`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from smolagents import CodeAgent, OpenAIServerModel, Tool

from engine.integrations.smolagents import LciExecutor
from tests.fake_llm import SSE, Reply, stream
from tests.server.conftest import API_KEY
from tests.server.helpers import FakeModel, LciServer


class Shout(Tool):
    name = "shout"
    description = "Upper-cases a text."
    inputs = {"text": {"type": "string", "description": "what to shout"}}
    output_type = "string"

    def forward(self, text: str) -> str:
        return text.upper() + "!"


def said(body: dict[str, Any]) -> str:
    """Everything the agent sent the model, as one text (observations included)."""
    return json.dumps(body["messages"])


def code(text: str) -> SSE:
    return stream(text=f"Thought: next step.\n```python\n{text}\n```\n", piece=40)


def task_script(fake: FakeModel, cwd: str) -> None:
    """Step 1 computes in the sandbox (whose working directory is `cwd`) and prints; step 2 sees
    the printout and a tool's output, hits an error; step 3 sees the error and answers with a value
    computed in step 1."""

    def after_first(body: dict[str, Any]) -> SSE:
        assert f"cwd {cwd} 42" in said(body), said(body)[-2000:]
        assert "HELLO!" in said(body)
        return code("1 / 0")

    def after_error(body: dict[str, Any]) -> SSE:
        assert "ZeroDivisionError" in said(body)
        return code("final_answer({'answer': x * 10, 'shouted': loud})")

    fake.script(
        code(
            "import os\nx = 6 * 7\nloud = shout(text='hello')\nprint('cwd', os.getcwd(), x, loud)"
        ),
        Reply(after_first),
        Reply(after_error),
    )


@pytest.fixture
def model(fake: FakeModel) -> Iterator[OpenAIServerModel]:
    yield OpenAIServerModel(model_id="fake-model", api_base=fake.base_url, api_key="none")


def session_ids(server: LciServer) -> list[str]:
    with server.client() as http:
        return [s["id"] for s in http.get("/v1/sessions").json()["sessions"]]


def run(agent: CodeAgent) -> Any:
    try:
        return agent.run("Compute 6 * 7, shout hello, then answer ten times the product.")
    finally:
        agent.cleanup()


def test_code_agent_with_smolagents_e2b_executor(
    server: LciServer, fake: FakeModel, model: OpenAIServerModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("E2B_API_URL", server.url)
    monkeypatch.setenv("E2B_SANDBOX_URL", server.url)
    monkeypatch.setenv("E2B_API_KEY", API_KEY)
    monkeypatch.delenv("E2B_DEBUG", raising=False)
    task_script(fake, cwd="/home/user")  # where E2B's sandboxes start
    agent = CodeAgent(
        tools=[Shout()], model=model, executor_type="e2b", stream_outputs=True, max_steps=5
    )
    assert run(agent) == {"answer": 420, "shouted": "HELLO!"}
    fake.check()


def test_code_agent_with_the_lci_executor(
    server: LciServer, fake: FakeModel, model: OpenAIServerModel
) -> None:
    task_script(fake, cwd="/workspace")
    executor = LciExecutor(server.url, api_key=API_KEY, additional_imports=["numpy", "nopkg"])
    assert executor.session_id in session_ids(server)
    agent = CodeAgent(
        tools=[Shout()], model=model, executor=executor, stream_outputs=True, max_steps=5
    )
    assert run(agent) == {"answer": 420, "shouted": "HELLO!"}
    fake.check()
    assert executor.session_id not in session_ids(server)  # cleanup closed it


class PilTool(Tool):
    name = "size_of"
    description = "The size of a new image."
    inputs = {"width": {"type": "integer", "description": "its width"}}
    output_type = "string"

    def forward(self, width: int) -> str:
        from PIL import Image

        return str(Image.new("RGB", (width, 1)).size)


def test_a_tool_needing_pil_is_not_reported_missing(server: LciServer) -> None:
    logged: list[str] = []
    executor = LciExecutor(server.url, api_key=API_KEY, additional_imports=["nopkg"])
    executor.logger.log = lambda *parts, **kw: logged.append(" ".join(map(str, parts)))  # type: ignore[method-assign]
    try:
        executor.send_tools({"size_of": PilTool()})  # smolagents asks for `pillow` here
        assert executor.installed_packages.count("pillow") == 1
        assert not [line for line in logged if "not importable" in line], logged
        executor.install_packages(["nopkg", "pillow"])
        assert any("not importable" in line and "nopkg" in line for line in logged), logged
        assert not any("pillow" in line or "PIL" in line for line in logged if "nopkg" in line)
    finally:
        executor.cleanup()


def test_lci_executor_returns_values_and_images(server: LciServer) -> None:
    executor = LciExecutor(server.url, api_key=API_KEY)
    try:
        assert executor("21 * 2").output == "42"
        assert executor("print('x')").logs == "x\n"
        image = executor("from PIL import Image\nImage.new('RGB', (120, 80), 'red')").output
        # PIL images display as JPEG and PNG: like smolagents' E2B executor, JPEG is taken first
        assert image.format == "JPEG" and image.size == (120, 80)
        red, green, blue = image.getpixel((5, 5))
        assert red > 200 and green < 50 and blue < 50
    finally:
        executor.cleanup()
        executor.cleanup()  # twice is fine
