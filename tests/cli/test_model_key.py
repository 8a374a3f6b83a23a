"""The model server's key never goes on the command line, where every local user reads it in
/proc/<pid>/cmdline: `lci serve --llm-api-key` and `lci chat --api-key` are refused in one line that
names the alternatives, which work: `LCI_LLM_API_KEY`, or a file (`--llm-api-key-file`,
`--api-key-file`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.cli.helpers import lci, lci_env
from tests.fake_llm import FakeLLM, stream
from tests.server.helpers import REPO, LciServer, free_port

SECRET = "model-key-0123456789"


def _key_file(tmp_path: Path) -> Path:
    path = tmp_path / "model-key"
    path.write_text(SECRET + "\n")
    path.chmod(0o600)
    return path


def _authorization(llm: FakeLLM) -> str:
    headers = {k.lower(): v for k, v in llm.requests[0].headers.items()}
    return headers["authorization"]


def test_a_model_key_on_the_chat_command_line_is_refused(tmp_path: Path) -> None:
    with FakeLLM() as llm:
        done = lci("chat", "--base-url", llm.base_url, "--api-key", SECRET, "q", state_dir=tmp_path)
        assert not llm.requests
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("lci chat: --api-key is not accepted")
    assert "LCI_LLM_API_KEY" in line and "--api-key-file" in line


def test_a_model_key_on_the_serve_command_line_is_refused(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "engine.cli", "serve", "--port", str(free_port())]
    done = subprocess.run(
        [*command, "--llm-api-key", SECRET],
        env=lci_env(tmp_path / "state"),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,  # a server that started anyway would still be running: the test fails
        check=False,
    )
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("lci serve: --llm-api-key is not accepted")
    assert "LCI_LLM_API_KEY" in line and "--llm-api-key-file" in line


def test_chat_sends_the_key_from_its_file(tmp_path: Path) -> None:
    with FakeLLM() as llm:
        llm.script(stream(text="hello"))
        key = str(_key_file(tmp_path))
        done = lci(
            "chat", "--base-url", llm.base_url, "--api-key-file", key, "q", state_dir=tmp_path
        )
        assert done.returncode == 0, done.stderr
        assert _authorization(llm) == f"Bearer {SECRET}"


def test_serve_sends_the_key_from_its_file(tmp_path: Path) -> None:
    key = str(_key_file(tmp_path))
    with FakeLLM() as llm, LciServer(llm.base_url, args=["--llm-api-key-file", key]) as server:
        llm.script(stream(text="hello"))
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
        with server.client() as client:
            assert client.post("/v1/chat/completions", json=body).status_code == 200
        assert _authorization(llm) == f"Bearer {SECRET}"
        cmdline = Path(f"/proc/{server.process.pid}/cmdline").read_bytes()
        assert SECRET.encode() not in cmdline
