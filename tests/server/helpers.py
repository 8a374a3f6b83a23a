"""Test helpers of the server suite: `lci serve` as a real process, the fake model server shared by a
test session, and readers of the three SSE framings.

    with FakeModel() as fake, LciServer(fake.base_url, api_key="k") as server:
        fake.script(stream(calls=["1+1"]), stream(text="2"))
        httpx.post(server.url + "/v1/chat/completions", ...)
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.fake_llm import SSE, FakeLLM, HTTPError, Recorded, Turn, stream
from tests.fake_llm import _Handler as _FakeHandler

covers = pytest.mark.covers  # the items of docs/conformance/checklist.md a test covers

REPO = Path(__file__).resolve().parents[2]
QUESTION = "Run the code interpreter twice: first compute 123 to the power of 23, then divide by 5."
SMALL_LIMITS = {"timeout_s": 10, "memory_mb": 256, "max_procs": 32, "disk_mb": 32}


class FakeModel(FakeLLM):
    """The fake model server, shareable by many tests: `reset` forgets the previous test's script
    and requests; `default`, when set, answers requests beyond the script."""

    def __init__(self, default: Callable[[dict[str, Any]], SSE | HTTPError] | None = None) -> None:
        super().__init__()
        self.default = default

    def reset(self) -> None:
        with self._lock:
            self._turns.clear()
            self.requests.clear()
            self.failures.clear()

    def take(self, path: str, headers: dict[str, str], body: dict[str, Any]) -> SSE | HTTPError:
        if self.default is not None and not self.remaining:
            with self._lock:
                self.requests.append(Recorded(path, headers, body))
            return self.default(body)
        return super().take(path, headers, body)

    def chat_requests(self) -> list[dict[str, Any]]:
        return [r.body for r in self.requests if r.path.endswith("/chat/completions")]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class LciServer:
    """`python -m engine.cli serve` on a free port, with the subprocess backend and small limits.
    `env` adds LCI_* settings; the server is stopped with SIGTERM (a graceful shutdown). Without
    `llm_base_url`, no --llm-base-url is given (for `--llm-model demo`)."""

    def __init__(
        self,
        llm_base_url: str | None,
        *,
        api_key: str | None = None,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_key = api_key
        self._openai: openai.OpenAI | None = None
        self._dir = tempfile.TemporaryDirectory(prefix="lci-serve-")
        keep = os.environ.get("LCI_TEST_SERVER_LOGS")  # a directory that keeps the servers' logs
        self.log_path = Path(keep or self._dir.name) / f"server-{self.port}.log"
        clean = {k: v for k, v in os.environ.items() if not k.startswith("LCI_")}
        clean.update(
            LCI_STATE_DIR=str(Path(self._dir.name) / "state"),
            LCI_LIMITS=json.dumps(SMALL_LIMITS),
            LCI_INTERRUPT_GRACE_S="0.5",
            LCI_DOCKER_WARM_POOL="0",
            **({"LCI_API_KEY": api_key} if api_key else {}),
        )
        clean.update(env or {})  # may replace the defaults above (a shared LCI_STATE_DIR, say)
        command = [
            sys.executable,
            "-m",
            "engine.cli",
            "serve",
            "--port",
            str(self.port),
            "--backend",
            "subprocess",
            *(["--llm-base-url", llm_base_url] if llm_base_url is not None else []),
            "--llm-model",
            "fake-model",
            "--log-level",
            os.environ.get("LCI_TEST_SERVER_LOG_LEVEL", "warning"),
            *(args or []),
        ]
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            command, cwd=REPO, env=clean, stdout=self._log, stderr=subprocess.STDOUT
        )
        self._wait_ready()

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers, timeout=60, **kwargs)

    def async_client(self, **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, headers=self.headers, timeout=60, **kwargs)

    def _wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"lci serve exited early:\n{self.logs()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"lci serve did not become ready:\n{self.logs()}")

    def openai(self) -> openai.OpenAI:
        """An `openai` SDK client of this server (one, closed with the server)."""
        if self._openai is None:
            self._openai = openai.OpenAI(
                api_key=self.api_key or "none", base_url=self.url + "/v1", max_retries=0
            )
        return self._openai

    def logs(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM, then wait; returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode

    def close(self) -> None:
        if self._openai is not None:
            self._openai.close()
        self.stop()
        self._dir.cleanup()

    def __enter__(self) -> LciServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# -- the scripted model turns of the reference scenario ----------------------------------------


def two_executions(flavor: Any = "vllm") -> list[Turn]:
    """The example of docs/conformance/README.md: think, 123**23, think, divide by 5, think,
    answer."""
    return [
        stream(
            reasoning="The user wants two executions. First, compute 123**23.",
            calls=["123**23"],
            usage=(1100, 60, 40),
            flavor=flavor,
        ),
        stream(
            reasoning="The result is known. Now divide it by 5.",
            calls=["1169008215014432917465348578887506800769541157267 / 5"],
            usage=(1195, 70, 30),
            flavor=flavor,
        ),
        stream(
            reasoning="Both results are ready; report them.",
            text="123^23 = 1169008215014432917465348578887506800769541157267. "
            "Divided by 5: 2.338016430028866e+47.",
            usage=(1300, 55, 15),
            flavor=flavor,
        ),
    ]


# -- reading streams ---------------------------------------------------------------------------


@dataclass
class SSEEvent:
    fields: dict[str, str]
    comments: list[str]
    raw: str
    at: float  # when it arrived (monotonic)

    @property
    def data(self) -> str:
        return self.fields.get("data", "")

    def json(self) -> Any:
        return json.loads(self.data)


def read_sse(response: httpx.Response) -> Iterator[SSEEvent]:
    """Events of an SSE body as sent (blank-line separated), with their arrival times. Field
    names are split at the first colon, with or without a following space."""
    buffer = ""
    for text in response.iter_text():
        buffer += text
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            yield _parse_block(block)
    if buffer.strip():
        yield _parse_block(buffer)


def _parse_block(block: str) -> SSEEvent:
    fields: dict[str, str] = {}
    comments: list[str] = []
    for line in block.split("\n"):
        if line.startswith(":"):
            comments.append(line[1:])
            continue
        name, _, value = line.partition(":")
        fields[name] = value[1:] if value.startswith(" ") else value
    return SSEEvent(fields, comments, block, time.monotonic())


def sse_events(server: LciServer, path: str, body: dict[str, Any], **kw: Any) -> list[SSEEvent]:
    with (
        server.client() as client,
        client.stream("POST", path, json=body, **kw) as response,
    ):
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        return list(read_sse(response))


# -- a fake model server that answers anything (for the fuzzer) --------------------------------


class _AnyRequestHandler(_FakeHandler):
    def do_GET(self) -> None:
        data = json.dumps({"object": "list", "data": [{"id": "fake-model", "object": "model"}]})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data.encode())


COMPLETION = {
    "id": "chatcmpl-fake",
    "object": "chat.completion",
    "created": 1767225600,
    "model": "fake-model",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
}


def answer_anything(body: dict[str, Any]) -> SSE | HTTPError:
    """A short reply to any request: streamed when asked for a stream, else one JSON body."""
    return stream(text="ok") if body.get("stream") else HTTPError(200, COMPLETION)


def forgiving_fake() -> FakeModel:
    """A fake model server that answers every request, and lists a model on GET /v1/models."""
    fake = FakeModel(default=answer_anything)
    fake._server.RequestHandlerClass = _AnyRequestHandler
    return fake
