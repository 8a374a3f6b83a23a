"""How `lci chat` ends, run as the command it is: an answer cut short is not a success, and a model
server that sends garbage is a one-line error, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.fake_llm import FakeLLM, malformed, stream

REPO = Path(__file__).resolve().parents[2]


def lci_chat(llm: FakeLLM, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LCI_")}
    env["PYTHONPATH"] = str(REPO)
    command = [sys.executable, "-m", "engine.cli", "chat", "--base-url", llm.base_url, *args]
    return subprocess.run(
        [*command, "What is 7**77?"],
        check=False,
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cut_short_answer_exits_non_zero(llm: FakeLLM) -> None:
    # Once, a reply cut at the model server's token limit exited 0.
    llm.script(stream(calls=["7**77"]), stream(text="7**77 is 11", finish="length"))
    done = lci_chat(llm, "--no-reasoning")
    llm.check()
    assert done.returncode == 3, done.stderr
    assert "cut short: the model server's token limit was reached" in done.stdout


def test_malformed_stream_is_an_error_line(llm: FakeLLM) -> None:
    # Once, `data: {this is not json` gave a 40-line JSONDecodeError traceback.
    llm.script(malformed())
    done = lci_chat(llm)
    llm.check()
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "error (upstream_error): the model server sent malformed stream data" in done.stderr
