"""A fake OpenAI-compatible model server: a real HTTP server on 127.0.0.1 replaying scripted turns.

Each POST to /v1/chat/completions takes the next scripted turn. A turn is an SSE stream (built by
`stream(...)` in the style of vLLM, llama.cpp server or Ollama), an HTTP error, a dropped stream, or
a `Reply` computed from the request (a scripted model that reads the tool results it was sent).
Every request is recorded, and a turn's `expect` callback can assert on it; a failed expectation is
answered with HTTP 500 and kept in `failures`, which `check()` raises.

    with FakeLLM() as llm:
        llm.script(stream(calls=["123**21"]), Reply(lambda body: stream(text="...")))
        ... point a client at llm.base_url ...
        llm.check()
"""

from __future__ import annotations

import contextlib
import json
import secrets
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

Flavor = Literal["vllm", "vllm-legacy", "vllm-both", "llamacpp", "ollama"]
Expect = Callable[[dict[str, Any]], None]


@dataclass
class SSE:
    """A 200 text/event-stream response. `events` are JSON objects (sent as `data: {...}`) or raw
    strings (sent as they are). `drop_after`: send that many events, then cut the connection
    without ending the HTTP body. `done`: end with `data: [DONE]`."""

    events: list[dict[str, Any] | str]
    drop_after: int | None = None
    done: bool = True
    delay_s: float = 0.0
    expect: Expect | None = None


@dataclass
class HTTPError:
    status: int
    body: dict[str, Any] = field(
        default_factory=lambda: {"error": {"message": "boom", "type": "server_error"}}
    )
    headers: dict[str, str] = field(default_factory=dict)
    expect: Expect | None = None


@dataclass
class Reply:
    """A turn decided by the request: `make(body)` returns the turn to send."""

    make: Callable[[dict[str, Any]], SSE | HTTPError]
    expect: Expect | None = None


Turn = SSE | HTTPError | Reply


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class FakeLLM:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.failures: list[str] = []
        self._turns: list[Turn] = []
        self._lock = threading.Lock()
        self.closing = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._server.fake = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def script(self, *turns: Turn) -> None:
        with self._lock:
            self._turns.extend(turns)

    @property
    def remaining(self) -> int:
        return len(self._turns)

    def check(self, *, all_used: bool = True) -> None:
        """Raise if an expectation failed (or, with all_used, a scripted turn was never
        asked for)."""
        assert not self.failures, "\n".join(self.failures)
        if all_used:
            assert not self._turns, f"{len(self._turns)} scripted turn(s) were never requested"

    def close(self) -> None:
        self.closing.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> FakeLLM:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def take(self, path: str, headers: dict[str, str], body: dict[str, Any]) -> SSE | HTTPError:
        with self._lock:
            self.requests.append(Recorded(path, headers, body))
            turn = self._turns.pop(0) if self._turns else None
        if turn is None:
            return self._fail("request beyond the script", path, body)
        try:
            if turn.expect is not None:
                turn.expect(body)
            if isinstance(turn, Reply):
                made = turn.make(body)
                if made.expect is not None:
                    made.expect(body)
                return made
        except Exception as exc:
            return self._fail(f"expectation failed: {exc!r}", path, body)
        return turn

    def _fail(self, reason: str, path: str, body: dict[str, Any]) -> HTTPError:
        self.failures.append(f"request {len(self.requests)} to {path}: {reason}\n{body}")
        return HTTPError(500, {"error": {"message": f"fake LLM: {reason}", "type": "test"}})


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # Events go out as many small writes: without this, Nagle's algorithm and delayed ACKs
        # hold each round up by tens of milliseconds.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        fake: FakeLLM = self.server.fake  # type: ignore[attr-defined]
        turn = fake.take(self.path, dict(self.headers), body)
        try:
            if isinstance(turn, HTTPError):
                self._send_error(turn)
            else:
                self._send_stream(turn, fake.closing)
        except ConnectionError:  # the client went away (a retry, a cancel): nothing to answer
            self.close_connection = True

    def _send_error(self, turn: HTTPError) -> None:
        data = json.dumps(turn.body).encode()
        self.send_response(turn.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in turn.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _send_stream(self, turn: SSE, closing: threading.Event) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        events = [e if isinstance(e, str) else json.dumps(e) for e in turn.events]
        if turn.done:
            events.append("[DONE]")
        for sent, data in enumerate(events):
            if turn.drop_after is not None and sent >= turn.drop_after:
                self._drop()
                return
            if turn.delay_s and closing.wait(turn.delay_s):
                self._drop()
                return
            self._chunk(f"data: {data}\n\n".encode())
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _drop(self) -> None:
        # Cut the TCP connection mid-body, as a crashing server or a broken proxy would.
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


# -- streams in the style of real servers ----------------------------------------------------------


@dataclass
class Call:
    """A tool call to script: `arguments` is sent verbatim; `code` builds {"code": code}."""

    code: str | None = None
    arguments: str | None = None
    id: str | None = None
    name: str = "code_interpreter"

    def args(self) -> str:
        return self.arguments if self.arguments is not None else json.dumps({"code": self.code})


def stream(
    *,
    text: str = "",
    reasoning: str = "",
    calls: list[Call | str] | None = None,
    flavor: Flavor = "vllm",
    usage: tuple[int, int, int] | None = (100, 20, 5),
    piece: int = 7,
    finish: str | None = None,
    cached: int | None = None,
    **kw: Any,
) -> SSE:
    """One round as `flavor` streams it (docs/conformance/upstream.md, reading the stream):
    reasoning, then text, then tool calls
    (`"code"` strings are shorthand for Call(code=...)), the finish chunk and usage
    (prompt, completion, reasoning tokens; `cached` prompt tokens). Text and arguments are cut into
    `piece`-sized deltas. `finish` overrides the finish reason (e.g. "length": cut off at
    max_tokens)."""
    the_calls = [Call(code=c) if isinstance(c, str) else c for c in calls or []]
    cid = "chatcmpl-" + secrets.token_hex(6)
    events: list[dict[str, Any] | str] = [_chunk(cid, _first_delta(flavor))]
    for part in _pieces(reasoning, piece):
        events.append(_chunk(cid, _with_role(flavor, _reasoning_delta(flavor, part))))
    for part in _pieces(text, piece):
        events.append(_chunk(cid, _with_role(flavor, {"content": part})))
    for index, call in enumerate(the_calls):
        events.extend(
            _chunk(cid, _with_role(flavor, {"tool_calls": tc}))
            for tc in _call_deltas(flavor, index, call, piece)
        )
    finish = finish or ("tool_calls" if the_calls else "stop")
    events.extend(_finish(cid, flavor, finish, usage, cached))
    return SSE(events, **kw)


def _chunk(
    cid: str, delta: dict[str, Any], finish: str | None = None, **extra: Any
) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": 1767225600,
        "model": "fake-model",
        "choices": [choice],
        **extra,
    }


def _first_delta(flavor: Flavor) -> dict[str, Any]:
    if flavor == "llamacpp":
        return {"role": "assistant", "content": None}
    return {"role": "assistant", "content": ""}


def _with_role(flavor: Flavor, delta: dict[str, Any]) -> dict[str, Any]:
    return {"role": "assistant", **delta} if flavor == "ollama" else delta


def _reasoning_delta(flavor: Flavor, text: str) -> dict[str, Any]:
    if flavor in ("vllm-legacy", "llamacpp"):
        return {"reasoning_content": text}
    if flavor == "vllm-both":
        return {"reasoning": text, "reasoning_content": text}
    return {"reasoning": text}


def _call_deltas(flavor: Flavor, index: int, call: Call, piece: int) -> list[list[dict[str, Any]]]:
    call_id = call.id or (
        "call_" + secrets.token_hex(12)
        if flavor == "ollama"
        else "chatcmpl-tool-" + secrets.token_hex(8)
    )
    args = call.args()
    if flavor == "ollama":  # whole calls in one chunk
        return [
            [
                {
                    "id": call_id,
                    "index": index,
                    "type": "function",
                    "function": {"name": call.name, "arguments": args},
                }
            ]
        ]
    parts = _pieces(args, piece)
    function: dict[str, Any] = {"name": call.name}
    head = {"index": index, "id": call_id, "type": "function", "function": function}
    if flavor == "llamacpp":
        function["arguments"] = ""
        first = [[head]]
    else:  # vLLM hermes: name and the first arguments fragment as two entries of one chunk
        first = (
            [[head, {"index": index, "function": {"arguments": parts.pop(0)}}]]
            if parts
            else [[head]]
        )
    return first + [[{"index": index, "function": {"arguments": p}}] for p in parts]


def _finish(
    cid: str,
    flavor: Flavor,
    finish: str,
    usage: tuple[int, int, int] | None,
    cached: int | None = None,
) -> list[dict[str, Any] | str]:
    block: dict[str, Any] | None = None
    if usage is not None:
        prompt, completion, reasoning = usage
        block = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        if flavor != "ollama" and block is not None:
            block["completion_tokens_details"] = {"reasoning_tokens": reasoning}
        if cached is not None:
            block["prompt_tokens_details"] = {"cached_tokens": cached}
    if flavor == "llamacpp":  # usage and timings on the finish chunk itself
        extra: dict[str, Any] = {"timings": {"predicted_ms": 12.5}}
        if block is not None:
            extra["usage"] = block
        return [_chunk(cid, {}, finish, **extra)]
    last = _chunk(cid, {}, finish)
    if flavor.startswith("vllm"):
        last["choices"][0]["stop_reason"] = None
    events: list[dict[str, Any] | str] = [last]
    if block is not None:
        events.append(
            {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": 1767225600,
                "model": "fake-model",
                "choices": [],
                "usage": block,
            }
        )
    return events


def _pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def error_event(message: str = "engine overloaded", code: int = 503) -> dict[str, Any]:
    """vLLM's in-stream error (sent as `data: {"error": ...}` and followed by [DONE])."""
    return {
        "error": {
            "message": message,
            "type": "ServiceUnavailableError",
            "param": None,
            "code": code,
        }
    }


# -- habits of small models and broken servers -----------------------------------------------------


def dict_call(code: str, *, fenced: str | None = None) -> str:
    """A call written as a Python dict (single quotes), as small Qwen coder models do; `fenced`
    puts it in a fenced block of that language."""
    text = repr({"name": "code_interpreter", "arguments": {"code": code}})
    return f"```{fenced}\n{text}\n```" if fenced is not None else text


def python_block(code: str, before: str = "", after: str = "") -> str:
    """A reply that writes its code as a fenced python block instead of calling the tool."""
    return f"{before}```python\n{code}\n```{after}"


def malformed(after: int = 1, text: str = "{this is not json") -> SSE:
    """A stream that sends `after` good chunks, then a data line that is not JSON."""
    good = stream(text="Let me think.", piece=4).events[:after]
    return SSE([*good, text])


def unused_port() -> int:
    """A port on 127.0.0.1 with nothing listening (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- reading what the loop sent ------------------------------------------------------------------


def tool_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in body["messages"] if m.get("role") == "tool"]


def last_tool_text(body: dict[str, Any]) -> str:
    content = tool_messages(body)[-1]["content"]
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content)
    return str(content)
