"""The scripted demo model: a tiny OpenAI-compatible Chat Completions server on a random loopback
port, so the loop can be seen without a model server (`lci demo`, `lci chat --model demo`,
`lci serve --llm-model demo`).

It is a script, not a model: its replies are fixed. Each question gets the same four rounds,
chosen by how many tool results follow the last user message: a computation, a cell with a typo
(an error), the fixed cell that draws a figure and writes a file, and an answer that quotes the
real results the loop sent back. The code runs for real, in a real sandbox, through the real
loop and surfaces; only the model's words are canned. Token counts are characters / 4.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEMO_MODEL = "demo"
NOTICE = "(lci's scripted demo model: these words are canned, the code runs for real.)"

_PRIMES = (
    "primes = [n for n in range(2, 100) if all(n % d for d in range(2, int(n**0.5) + 1))]\n"
    "print(len(primes), 'primes below 100')\n"
    "sum(primes)"
)
_TYPO = "gaps = [b - a for a, b in zip(primes, primes[1:])]\nmax(gap)"
_FIXED = (
    "import matplotlib.pyplot as plt\n"
    "gaps = [b - a for a, b in zip(primes, primes[1:])]\n"
    "plt.figure(figsize=(6, 3))\n"
    "plt.bar(primes[1:], gaps)\n"
    "plt.title('Gaps between the primes below 100')\n"
    "plt.savefig('prime_gaps.png')\n"
    "with open('primes.csv', 'w') as f:\n"
    "    f.write('prime,gap\\n' + ''.join(f'{p},{g}\\n' for p, g in zip(primes[1:], gaps)))\n"
    "plt.show()\n"
    "max(gaps)"
)
# (reasoning, text, code) per round; the round after the last answers.
_SCRIPT = [
    ("A question: start with a computation.", NOTICE + "\nFirst, the primes below 100.", _PRIMES),
    ("Next, the gaps between them.", "Now the largest gap between them.", _TYPO),
    (
        "A NameError: the list is `gaps`, not `gap`.",
        "A typo (`gap`): fixed, with a figure shown and saved, and a CSV file written.",
        _FIXED,
    ),
]


def reply(body: dict[str, Any]) -> dict[str, Any]:
    """The assistant message (reasoning, content, tool_calls) for a request body."""
    messages = body.get("messages") or []
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
    results = [m for m in messages[last_user + 1 :] if m.get("role") == "tool"]
    tools = {t.get("function", {}).get("name") for t in body.get("tools") or []}
    step = len(results)
    if "code_interpreter" in tools and step < len(_SCRIPT):
        reasoning, text, code = _SCRIPT[step]
        call = {
            "id": "call_" + uuid.uuid4().hex[:12],
            "type": "function",
            "function": {"name": "code_interpreter", "arguments": json.dumps({"code": code})},
        }
        return {"reasoning_content": reasoning, "content": text, "tool_calls": [call]}
    return {"reasoning_content": "Answer with what the code returned.", "content": _answer(results)}


def _answer(results: list[dict[str, Any]]) -> str:
    if not results:
        return f"{NOTICE}\nAsk me anything: I run the same demo cells every time."
    quoted = [_last_value(str(m.get("content", ""))) for m in results]
    lines = [f"- cell {n}: {q}" for n, q in enumerate(quoted, 1) if q]
    return (
        "The sandbox answered (quoted from the results, not computed by me):\n"
        + "\n".join(lines)
        + "\nThe figure was saved as prime_gaps.png and the table as primes.csv in the "
        "working directory.\n" + NOTICE
    )


def _last_value(result: str) -> str:
    """The last line of the last fenced block of a tool result (the value or the error)."""
    blocks = re.findall(r"```[^\n]*\n(.*?)```", result, flags=re.S)
    lines = (blocks[-1] if blocks else result).strip().splitlines()
    return lines[-1].strip() if lines else ""


def _tokens(value: Any) -> int:
    return max(1, len(json.dumps(value)) // 4)


def stream_events(body: dict[str, Any], message: dict[str, Any]) -> list[dict[str, Any]]:
    """The message as Chat Completions chunks: reasoning, text in pieces, tool calls, finish,
    usage."""
    cid = "chatcmpl-demo-" + uuid.uuid4().hex[:8]
    model = body.get("model") or DEMO_MODEL

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        created = int(time.time())
        return {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [choice],
        }

    events = [chunk({"role": "assistant", "content": ""})]
    events.append(chunk({"reasoning_content": message["reasoning_content"]}))
    text = message.get("content") or ""
    events += [chunk({"content": text[i : i + 24]}) for i in range(0, len(text), 24)]
    for index, call in enumerate(message.get("tool_calls") or []):
        events.append(chunk({"tool_calls": [{"index": index, **call}]}))
    events.append(chunk({}, "tool_calls" if message.get("tool_calls") else "stop"))
    usage = {"prompt_tokens": _tokens(body.get("messages")), "completion_tokens": _tokens(message)}
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    events.append({**chunk({}), "choices": [], "usage": usage})
    return events


def completion(body: dict[str, Any], message: dict[str, Any]) -> dict[str, Any]:
    """The message as one (non-streamed) chat.completion."""
    finish = "tool_calls" if message.get("tool_calls") else "stop"
    prompt, done = _tokens(body.get("messages")), _tokens(message)
    return {
        "id": "chatcmpl-demo-" + uuid.uuid4().hex[:8],
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model") or DEMO_MODEL,
        "choices": [
            {"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}
        ],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": done,
            "total_tokens": prompt + done,
        },
    }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a demo prints nothing of its own

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            model = {"id": DEMO_MODEL, "object": "model", "created": 0, "owned_by": "lci"}
            return self._json(200, {"object": "list", "data": [model]})
        self._json(404, {"error": {"message": "not found", "type": "not_found"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            return self._json(400, {"error": {"message": "invalid JSON", "type": "bad_request"}})
        if not self.path.rstrip("/").endswith("/chat/completions") or not isinstance(body, dict):
            return self._json(404, {"error": {"message": "not found", "type": "not_found"}})
        message = reply(body)
        if not body.get("stream"):
            return self._json(200, completion(body, message))
        payload = b"".join(
            b"data: " + json.dumps(e).encode() + b"\n\n" for e in stream_events(body, message)
        )
        self._send(200, "text/event-stream", payload + b"data: [DONE]\n\n")

    def _json(self, status: int, value: dict[str, Any]) -> None:
        self._send(status, "application/json", json.dumps(value).encode())

    def _send(self, status: int, kind: str, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class DemoModel:
    """The server, running in a daemon thread while the context is open."""

    def __init__(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> DemoModel:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
