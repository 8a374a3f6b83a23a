"""`lci chat` against the fake model server, with the real subprocess backend."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from engine.cli import chat as cli_chat
from tests.fake_llm import FakeLLM, stream, unused_port

PLOT = "import matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.show()\n6 * 7"


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="lci")
    cli_chat.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["chat", *argv])


async def test_chat_prints_live_and_saves_images(
    llm: FakeLLM, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    llm.script(
        stream(reasoning="Plot, then multiply.", calls=[PLOT]),
        stream(text="The answer is 42.", usage=(300, 8, 0)),
    )
    args = parse(
        "--base-url",
        llm.base_url,
        "--model",
        "m1",
        "--out-dir",
        str(tmp_path),
        "--temperature",
        "0",
        "What",
        "is",
        "6*7?",
    )
    assert await cli_chat.run(args) == 0
    llm.check()
    out = capsys.readouterr().out
    assert "Plot, then multiply." in out and PLOT.splitlines()[0] in out
    assert "execute_result:\n\n```\n42\n```" in out
    (image,) = tmp_path.glob("lci-*-fig-001.png")
    assert f"image saved: {image}" in out
    assert image.read_bytes().startswith(b"\x89PNG")
    assert "── round 2 ──\nThe answer is 42.\n" in out
    assert "2 rounds, 1 code execution, 400 input + 28 output tokens" in out
    body = llm.requests[0].body
    assert body["model"] == "m1" and body["temperature"] == 0
    assert body["messages"][-1] == {"role": "user", "content": "What is 6*7?"}


async def test_chat_reads_environment(
    llm: FakeLLM, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LCI_LLM_BASE_URL", llm.base_url)
    monkeypatch.setenv("LCI_LLM_MODEL", "from-env")
    llm.script(stream(text="hi"))
    assert await cli_chat.run(parse("--json", "hello")) == 0
    assert llm.requests[0].body["model"] == "from-env"
    assert capsys.readouterr().out.splitlines()[-1].startswith('{"type":"final"')


async def test_chat_error_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    args = parse("--base-url", f"http://127.0.0.1:{unused_port()}/v1", "hello")
    assert await cli_chat.run(args) == 1
    assert "error (upstream_error): cannot reach the model server" in capsys.readouterr().err
