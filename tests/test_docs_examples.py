"""Every marked example of the README and the docs pages (`<!-- example: NAME -->`, extracted by
tests/readme.py) runs as written against a real `lci serve` (subprocess backend) in front of a
scripted model and a fake SearXNG, in a directory of its own, without any API key in the
environment, and prints what its comments say; each also passes the check named for it in CHECKS.
An example without a check fails `test_every_example_is_checked`, so none is left unrun."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.cli.helpers import lci_env
from tests.fake_llm import SSE, Call, stream
from tests.fake_web import FakeWeb, hit
from tests.readme import DOCS, LCI_URL, MODEL_URL, ROOT, examples, pages, unparsed_markers
from tests.server.helpers import FakeModel, LciServer

EXAMPLES = examples()
VALUE = str(123**23)
# The model's first cell computes, draws and saves a figure: an example that breaks on real
# output (an image among the logs, a file written by code) fails here, not for a reader.
FIRST_CELL = (
    "x = 123**23\nimport matplotlib.pyplot as plt\nplt.figure(figsize=(2, 1), dpi=40)\n"
    "plt.plot([1, 2])\nplt.savefig('chart.png')\nplt.show()\nx"
)
ANSWER = f"123^23 = {VALUE}; divided by 5 it is {123**23 // 5}.4."
WEB_ANSWER = "The record was 105 cm above the average range."


class ScriptedModel:
    """The model the examples talk to. With the code interpreter: computes 123**23 (and draws),
    then divides by 5, then answers. With the web tools too: searches, opens the first hit,
    subtracts, answers. With the shell alone: computes 123**23 with python3, answers. Without tools: a greeting (plain chat passed through)."""

    def __init__(self, web: FakeWeb) -> None:
        self.web = web

    def __call__(self, body: dict[str, Any]) -> SSE:
        tools = {t.get("function", {}).get("name") for t in body.get("tools") or []}
        if not tools:
            return stream(text="Hello from the fake model.")
        messages = body.get("messages", [])
        last_user = max(i for i, m in enumerate(messages) if m.get("role") == "user")
        done = sum(1 for m in messages[last_user:] if m.get("role") == "tool")
        plan: list[Call | str] = [FIRST_CELL, "x / 5"]
        answer = ANSWER
        if "web_search" in tools:
            page = self.web.url("/pages/article")
            plan = [
                Call(
                    name="web_search", arguments=json.dumps({"query": "Port Example highest tide"})
                ),
                Call(name="web_extractor", arguments=json.dumps({"url": page})),
                "417 - 312",
            ]
            answer = WEB_ANSWER
        if tools == {"shell"}:
            command = {"commands": ["python3 -c 'print(123**23)'"]}
            plan, answer = [Call(name="shell", arguments=json.dumps(command))], ANSWER
        if done < len(plan):
            return stream(reasoning=f"Step {done + 1}.", calls=[plan[done]])
        return stream(reasoning="Both are known.", text=answer)


@dataclass
class Servers:
    fake: FakeModel
    lci: LciServer
    web: FakeWeb


@dataclass
class Ran:
    """What an example printed, and the directory it ran in."""

    out: str
    where: Path
    web: FakeWeb


@dataclass
class Check:
    """What an example must do beyond running and printing what its comments say; `env` is what
    its page tells the reader to set in the environment (addresses as the page writes them)."""

    check: Callable[[Ran], None] = lambda ran: None
    env: dict[str, str] = field(default_factory=dict)


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    with FakeWeb() as web:
        web.default_results = [
            hit("Tide tables of Port Example", web.url("/pages/article"), "Highest tide ..."),
            hit("Harbour office", "https://harbour.example/", "Opening hours"),
        ]
        env = {"LCI_SERVER_WEB_ALLOW_HOSTS": "127.0.0.1"}
        args = ["--web-search-url", web.base_url]
        fake = FakeModel(default=ScriptedModel(web))
        with fake, LciServer(fake.base_url, env=env, args=args) as server:
            yield Servers(fake, server, web)
            server.stop()
            assert "Traceback" not in server.logs(), server.logs()


def _here(text: str, servers: Servers) -> str:
    return text.replace(LCI_URL, servers.lci.url).replace(MODEL_URL, servers.fake.base_url)


def run_example(name: str, servers: Servers, where: Path) -> str:
    example = EXAMPLES[name]
    env = lci_env(where / "state")
    for key in ("DASHSCOPE_API_KEY", "OPENAI_API_KEY", "LCI_API_KEY", "E2B_API_KEY", "E2B_DEBUG"):
        env.pop(key, None)  # the examples must not need one
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env.update({k: _here(v, servers) for k, v in CHECKS[name].env.items()})
    code = _here(example.code, servers)
    command = (
        [sys.executable, "-c", code]
        if example.lang == "python"
        else ["bash", "-euo", "pipefail", "-c", code]
    )
    done = subprocess.run(
        command, cwd=where, env=env, capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, f"{name} ({example.page}) failed:\n{done.stdout}\n{done.stderr}"
    for expected in example.expected_prints():
        assert expected in done.stdout, f"{name}: {expected!r} not printed:\n{done.stdout}"
    return done.stdout


def _has(*texts: str) -> Callable[[Ran], None]:
    def check(ran: Ran) -> None:
        for text in texts:
            assert text in ran.out, f"{text!r} not in:\n{ran.out}"

    return check


def _png(*names: str) -> Callable[[Ran], None]:
    def check(ran: Ran) -> None:
        for name in names:
            assert (ran.where / name).read_bytes().startswith(b"\x89PNG"), name

    return check


def _ends(text: str) -> Callable[[Ran], None]:
    def check(ran: Ran) -> None:
        assert ran.out.rstrip().endswith(text), ran.out

    return check


def _figures(ran: Ran) -> None:
    _has(ANSWER)(ran)
    assert list((ran.where / "figures").glob("*.png")), ran.out


def _chat_files(ran: Ran) -> None:
    _has(ANSWER, "file saved: results/chart.png")(ran)
    _png("results/chart.png")(ran)


def _web(ran: Ran) -> None:
    opened = f"open_page {ran.web.url('/pages/article')}"
    _has(f"search Port Example highest tide\n{opened}\n", WEB_ANSWER, "'web_search': {'count': 1}")(
        ran
    )


def _containers(ran: Ran) -> None:
    _png("chart.png")(ran)  # cited on the answer and downloaded
    # the files of the container the code ran in: both uploads and the chart it wrote
    _has("notes.txt", "sales.csv", "user", "chart.png", "assistant")(ran)


E2B_ENV = {"E2B_API_URL": LCI_URL, "E2B_SANDBOX_URL": LCI_URL, "E2B_API_KEY": "SECRET"}
CHECKS: dict[str, Check] = {
    # README
    "exec-cells": Check(_ends("42\n10.5")),
    "chat": Check(_has(ANSWER)),
    "demo": Check(_has("scripted demo model", "NameError", "file saved: prime_gaps.png")),
    "openai-sdk": Check(_has(ANSWER)),
    "session-api": Check(_has('"42"', '"outcome":"completed"')),
    "python-api": Check(),
    "e2b-short": Check(env=E2B_ENV),
    # docs/exec.md
    "exec-files": Check(_ends("Lima,5\nOslo,7")),
    "exec-server": Check(_ends("42")),
    # docs/chat-loop.md
    "chat-options": Check(_figures),
    "chat-files": Check(_chat_files),
    # docs/openai.md: the streamed Responses example shows the logs of a call that drew a
    # figure, not the image
    "responses": Check(_has(ANSWER, f"[result]\n{VALUE}")),
    "containers": Check(_containers),
    "chat-completions": Check(_has(ANSWER, "Usage:")),
    "web-search": Check(_web),
    "shell": Check(
        _has(f"$ python3 -c 'print(123**23)'\n{VALUE}", ANSWER, "'shell': {'count': 1}")
    ),
    # docs/dashscope.md
    "dashscope": Check(_has(ANSWER, "[code] x = 123**23")),
    "dashscope-curl": Check(_has("code_interpreter")),
    # docs/sessions-api.md
    "sessions": Check(_png("result.png")),
    "sessions-tree": Check(_has('"path":"data/in.csv"', '"removed":true')),
    "sessions-snapshots": Check(_has("[1, 4, 9]", '"snapshots":[{"id":')),
    # docs/python-api.md
    "api-async": Check(),
    "api-sync": Check(_png("squares-1.png")),
    "api-tree": Check(),
    "api-snapshots": Check(_has("[1, 4, 9]", "True 3")),
    "api-client": Check(
        lambda ran: None if ran.out.startswith("hello\n") else pytest.fail(ran.out)
    ),
    # docs/commands.md
    "commands": Check(_has("apple\npear\n", "2 data.txt", "True")),
    # docs/mcp.md, docs/e2b.md
    "mcp": Check(),
    "mcp-key": Check(),  # the harness's server has no key: this checks the SDK calls as written
    "e2b": Check(env=E2B_ENV),
    # docs/rich-results.md
    "rich-results": Check(env=E2B_ENV),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example(name: str, servers: Servers, tmp_path: Path) -> None:
    out = run_example(name, servers, tmp_path)
    CHECKS[name].check(Ran(out, tmp_path, servers.web))


def test_every_example_is_checked() -> None:
    assert set(EXAMPLES) == set(CHECKS), "an example without a check, or a check without one"
    for name, example in EXAMPLES.items():
        assert example.lang in ("python", "bash"), name


def test_every_marker_marks_a_block() -> None:
    for page in pages():
        assert unparsed_markers(page) == 0, f"{page}: a marker not followed by a fenced block"


def test_the_docs_pages_are_searched() -> None:
    where = {example.page for example in EXAMPLES.values()}
    assert "README.md" in where and "docs/openai.md" in where, where


def test_every_page_is_in_the_index() -> None:
    index = (DOCS / "README.md").read_text()
    for page in DOCS.glob("*.md"):
        assert page.name == "README.md" or f"]({page.name})" in index, page.name


_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_relative_links_resolve() -> None:
    for page in pages():
        for target in _LINK.findall(page.read_text()):
            if "://" in target:
                continue
            path = (page.parent / target).resolve()
            # The wire conformance notes are written apart from these pages.
            if (DOCS / "conformance") in path.parents and not (DOCS / "conformance").exists():
                continue
            assert path.exists(), f"{page.relative_to(ROOT)} links to a missing {target}"
