"""What `lci chat` prints, as a real subprocess against the fake model server: code blocks are
numbered (not labelled with call ids), and a failed upstream leaves no empty round nor zero summary."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.helpers import lci
from tests.fake_llm import Call, FakeLLM, HTTPError, stream, unused_port


def test_blocks_are_numbered(tmp_path: Path) -> None:
    with FakeLLM() as llm:
        llm.script(stream(calls=["6 * 7", "7 * 8"]), stream(text="42 and 56."))
        done = lci("chat", "--base-url", llm.base_url, "q", state_dir=tmp_path / "state")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "── code 1 ──\n6 * 7" in out and "── code 2 ──\n7 * 8" in out
    assert "── result 1 (completed" in out and "── result 2 (completed" in out
    assert "call_" not in out and "chatcmpl" not in out


def test_upstream_failure_prints_only_the_error(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{unused_port()}/v1"
    done = lci("chat", "--base-url", url, "hello", state_dir=tmp_path / "state")
    assert done.returncode == 1
    assert done.stdout.strip() == ""  # no "── round 1 ──", no "0 input + 0 output tokens"
    assert "error (upstream_error): cannot reach the model server" in done.stderr


def test_failure_after_a_round_keeps_its_output(tmp_path: Path) -> None:
    with FakeLLM() as llm:
        llm.script(stream(calls=["6 * 7"]), HTTPError(400), HTTPError(400))
        done = lci("chat", "--base-url", llm.base_url, "q", state_dir=tmp_path / "state")
    assert done.returncode == 1
    assert "── round 1 ──" in done.stdout and "── round 2 ──" not in done.stdout
    assert "1 code execution" in done.stdout  # what happened before the failure is summed up


def test_shell_commands_run_beside_the_code_and_are_shown(tmp_path: Path) -> None:
    shell = Call(
        name="shell", arguments=json.dumps({"commands": ["echo hi > f.txt; cat f.txt", "exit 4"]})
    )
    with FakeLLM() as llm:
        llm.script(
            stream(calls=[shell]), stream(calls=["open('f.txt').read()"]), stream(text="hi.")
        )
        done = lci("chat", "--shell", "--base-url", llm.base_url, "q", state_dir=tmp_path / "state")
        offered = [t["function"]["name"] for t in llm.requests[0].body["tools"]]
    assert done.returncode == 0, done.stderr
    assert offered == ["code_interpreter", "shell"]
    out = done.stdout
    assert "── shell ──\n$ echo hi > f.txt; cat f.txt\n$ exit 4" in out
    assert "── shell output (exit 0): $ echo hi > f.txt; cat f.txt ──\nhi" in out
    assert "shell output (exit 4)" in out
    assert "'hi\\n'" in out  # the code ran in the same sandbox and read the file
    plain = FakeLLM()
    with plain:
        plain.script(stream(text="no tools needed."))
        lci("chat", "--base-url", plain.base_url, "q", state_dir=tmp_path / "state")
        names = [t["function"]["name"] for t in plain.requests[0].body["tools"]]
    assert names == ["code_interpreter"]  # without --shell, no shell
