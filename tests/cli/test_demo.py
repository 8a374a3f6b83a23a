"""`lci demo` and the scripted demo model: the real loop, the real sandbox, no model server."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.helpers import lci
from tests.server.helpers import LciServer


@pytest.mark.slow
def test_demo_runs_code_an_error_the_fix_a_figure_and_a_file(tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    done = lci("demo", "--out-dir", str(out_dir), state_dir=tmp_path / "state")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "scripted demo model" in out  # it says what it is
    assert "25 primes below 100" in out and "1060" in out  # computed in the sandbox
    assert "NameError: name 'gap' is not defined" in out  # the error, then the recovery
    assert "── result 3 (completed" in out
    assert "- cell 3: 8" in out  # the answer quotes the real result
    (figure,) = out_dir.glob("lci-*-fig-001.png")
    assert figure.read_bytes().startswith(b"\x89PNG")
    assert f"file saved: {out_dir / 'prime_gaps.png'}" in out
    assert (out_dir / "prime_gaps.png").read_bytes().startswith(b"\x89PNG")
    assert (out_dir / "primes.csv").read_text().startswith("prime,gap\n3,1\n5,2\n")
    assert "4 rounds, 3 code executions" in out


def test_chat_model_demo_ignores_the_configured_model_server(tmp_path: Path) -> None:
    # LCI_LLM_BASE_URL points nowhere: `--model demo` without --base-url needs no server.
    env = {"LCI_LLM_BASE_URL": "http://127.0.0.1:9/v1"}
    done = lci("chat", "--model", "demo", "--json", "x", state_dir=tmp_path / "state", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].startswith('{"type":"final"')


@pytest.mark.slow
def test_serve_with_the_demo_model_through_the_openai_client() -> None:
    with LciServer(None, args=["--llm-model", "demo"]) as server:
        client = server.openai()
        response = client.responses.create(
            model="demo", input="go", tools=[{"type": "code_interpreter"}]
        )
        text = response.output_text
        assert "- cell 1: 1060" in text and "NameError" in text, text
        # Without the code interpreter the request is passed through: the demo says what it is.
        reply = client.chat.completions.create(
            model="demo", messages=[{"role": "user", "content": "hi"}]
        )
        assert "scripted demo model" in (reply.choices[0].message.content or "")
        assert [m.id for m in client.models.list().data] == ["demo"]
        assert "the scripted demo model" in server.logs()
