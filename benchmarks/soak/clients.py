"""The soak's clients: each loops over the server's surfaces until the soak ends, and checks the
promises as it goes.

- session API: create, upload a file, several streamed executions of a counter, download the file
  after each, close. A counter that went back without `state_preserved: false` is a silent state
  loss; a file that changed or vanished is a lost file.
- Chat Completions (non-streamed), Responses (streamed), DashScope (non-streamed) against the model.

Every request has a client-side timeout well above anything the server should take; reaching it is
a hang. Status codes are counted; a 500 (an unexpected error) or a hang breaks a promise, while 429
(a cap) and 502/503/504 (a failed model server or sandbox start, said clearly) are honest refusals.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

SURFACES = ("session", "chat", "responses", "dashscope")
COUNTER_CODE = "counter = globals().get('counter', 0) + 1\nprint(counter)"


@dataclass
class Stats:
    started: float = field(default_factory=time.monotonic)
    latencies: dict[str, list[float]] = field(default_factory=dict)
    statuses: Counter[str] = field(default_factory=Counter)
    hangs: int = 0
    lost_files: int = 0
    silent_state_loss: int = 0
    announced_state_loss: int = 0
    lost_sessions: int = 0  # sessions that answered 410 session_lost (their files went too)
    outcomes: Counter[str] = field(default_factory=Counter)
    executions_without_outcome: int = 0
    errors: list[str] = field(default_factory=list)
    timeline: list[tuple[float, str, int]] = field(default_factory=list)  # (t, op, status)

    def record(self, op: str, status: int, seconds: float) -> None:
        self.latencies.setdefault(op, []).append(seconds)
        self.statuses[str(status)] += 1
        self.timeline.append((time.monotonic() - self.started, op, status))

    def note(self, message: str) -> None:
        if len(self.errors) < 200:
            self.errors.append(message)


class Client:
    def __init__(
        self,
        http: httpx.AsyncClient,
        stats: Stats,
        rng: random.Random,
        timeout_s: float,
        on_hang: Callable[[], None] = lambda: None,
    ) -> None:
        self.http = http
        self.stats = stats
        self.rng = rng
        self.timeout_s = timeout_s
        self.on_hang = on_hang  # e.g. ask the server to log what its tasks wait on

    async def request(self, op: str, method: str, url: str, **kwargs: Any) -> httpx.Response | None:
        started = time.monotonic()
        try:
            with self._watchdog():
                response = await asyncio.wait_for(
                    self.http.request(method, url, **kwargs), self.timeout_s
                )
        except TimeoutError:
            self.stats.hangs += 1
            self.stats.note(
                f"{op}: no answer within {self.timeout_s:g} s (sent at {_clock(started)})"
            )
            return None
        except httpx.HTTPError as exc:
            self.stats.record(op, 0, time.monotonic() - started)
            self.stats.note(f"{op}: {type(exc).__name__}: {exc}")
            return None
        self.stats.record(op, response.status_code, time.monotonic() - started)
        if response.status_code >= 500:
            self.stats.note(f"{op}: {response.status_code} {response.text[:300]}")
        return response

    @contextlib.contextmanager
    def _watchdog(self) -> Iterator[None]:
        """Call `on_hang` while a request that is about to count as a hang still runs."""
        handle = asyncio.get_running_loop().call_later(self.timeout_s * 0.8, self.on_hang)
        try:
            yield
        finally:
            handle.cancel()

    async def run(self, deadline: float) -> None:
        index = self.rng.randrange(len(SURFACES))
        while time.monotonic() < deadline:
            surface = SURFACES[index % len(SURFACES)]
            index += 1
            await getattr(self, f"_{surface}")(deadline)

    # -- the session API -------------------------------------------------------------------------
    async def _session(self, deadline: float) -> None:
        created = await self.request("create", "POST", "/v1/sessions", json={})
        if created is None or created.status_code != 201:
            await asyncio.sleep(0.2)  # refused (a cap, a failed start): back off a little
            return
        session_id = created.json()["id"]
        try:
            await self._use_session(session_id, deadline)
        finally:
            await self.request("close", "DELETE", f"/v1/sessions/{session_id}")

    async def _use_session(self, session_id: str, deadline: float) -> None:
        payload = os.urandom(self.rng.randint(1, 256) * 1024)
        files = {"file": ("keep.bin", payload)}
        uploaded = await self.request(
            "upload", "POST", f"/v1/sessions/{session_id}/files", files=files
        )
        if uploaded is None or uploaded.status_code != 201:
            self._lost(uploaded)
            return
        expected = 0
        for _ in range(self.rng.randint(2, 5)):
            if time.monotonic() > deadline:
                return
            execution = await self._execute_streamed(session_id)
            if execution is None:
                return
            self.stats.outcomes[execution["outcome"]] += 1
            expected = self._check_counter(execution, expected)
            if not await self._check_file(session_id, payload):
                return

    async def _execute_streamed(self, session_id: str) -> dict[str, Any] | None:
        started = time.monotonic()
        url = f"/v1/sessions/{session_id}/execute"
        body = {"code": COUNTER_CODE, "stream": True}
        try:
            with self._watchdog():
                async with (
                    asyncio.timeout(self.timeout_s),
                    self.http.stream("POST", url, json=body) as response,
                ):
                    status = response.status_code
                    if status != 200:
                        text = (await response.aread()).decode(errors="replace")
                        self.stats.record("execute", status, time.monotonic() - started)
                        self._lost(response)
                        if status >= 500:
                            self.stats.note(f"execute: {status} {text[:300]}")
                        return None
                    kind, execution = await _read_execution_event(response)
        except TimeoutError:
            self.stats.hangs += 1
            self.stats.note(
                f"execute: no outcome within the client timeout (sent at {_clock(started)})"
            )
            return None
        except httpx.HTTPError as exc:
            self.stats.record("execute", 0, time.monotonic() - started)
            self.stats.note(f"execute: {type(exc).__name__}: {exc}")
            return None
        self.stats.record("execute", 200, time.monotonic() - started)
        if kind == "error":  # a session-level failure, said clearly (a sandbox that cannot start)
            error = (execution or {}).get("error") or {}
            lost = error.get("code") == "session_lost"
            self.stats.outcomes["lost" if lost else "refused"] += 1
            self.stats.lost_sessions += lost
            return None
        if execution is None:
            self.stats.executions_without_outcome += 1
            self.stats.note("execute: the stream ended without an execution event")
        return execution

    def _check_counter(self, execution: dict[str, Any], expected: int) -> int:
        if execution["outcome"] != "completed":
            if not execution.get("state_preserved", True):
                self.stats.announced_state_loss += 1
                return 0
            return expected
        value = int(execution["stdout"].strip().splitlines()[-1])
        if value == expected + 1:
            return value
        if not execution["state_preserved"] and value == 1:
            self.stats.announced_state_loss += 1
            return value
        self.stats.silent_state_loss += 1
        self.stats.note(f"counter {value} after {expected}, state_preserved still true")
        return value

    async def _check_file(self, session_id: str, payload: bytes) -> bool:
        """Whether the session can go on (False: it is lost, or the download failed)."""
        url = f"/v1/sessions/{session_id}/files/keep.bin"
        response = await self.request("download", "GET", url)
        if self._lost(response):
            return False  # said so: the files went with the session, and nothing claims otherwise
        if response is None or response.status_code in (429, 503):
            return False  # refused for now (a cap, the daemon restarting): the file's fate unknown
        if response.status_code != 200 or response.content != payload:
            self.stats.lost_files += 1
            self.stats.note(f"keep.bin: {response.status_code}, {len(response.content)} bytes")
            return False
        return response is not None

    def _lost(self, response: httpx.Response | None) -> bool:
        """Whether `response` says the session is lost (410), counting it."""
        if response is None or response.status_code != 410:
            return False
        self.stats.lost_sessions += 1
        return True

    # -- the model-driven surfaces ---------------------------------------------------------------
    async def _chat(self, deadline: float) -> None:
        body = {
            "model": "fake-model",
            "messages": [{"role": "user", "content": "What is 6 times 7?"}],
            "enable_code_interpreter": True,
        }
        await self.request("chat", "POST", "/v1/chat/completions", json=body)

    async def _responses(self, deadline: float) -> None:
        body = {
            "model": "fake-model",
            "input": "What is 6 times 7?",
            "tools": [{"type": "code_interpreter", "container": {"type": "auto"}}],
            "stream": True,
        }
        started = time.monotonic()
        try:
            with self._watchdog():
                async with (
                    asyncio.timeout(self.timeout_s),
                    self.http.stream("POST", "/v1/responses", json=body) as response,
                ):
                    async for _ in response.aiter_bytes():
                        pass
                    status = response.status_code
        except TimeoutError:
            self.stats.hangs += 1
            self.stats.note(
                f"responses: no end within the client timeout (sent at {_clock(started)})"
            )
            return
        except httpx.HTTPError as exc:
            self.stats.record("responses", 0, time.monotonic() - started)
            self.stats.note(f"responses: {type(exc).__name__}: {exc}")
            return
        self.stats.record("responses", status, time.monotonic() - started)
        if status >= 500:
            self.stats.note(f"responses: {status}")

    async def _dashscope(self, deadline: float) -> None:
        body = {
            "model": "fake-model",
            "input": {"messages": [{"role": "user", "content": "What is 6 times 7?"}]},
            "parameters": {"enable_code_interpreter": True, "result_format": "message"},
        }
        url = "/api/v1/services/aigc/text-generation/generation"
        await self.request("dashscope", "POST", url, json=body)


def _clock(monotonic: float) -> str:
    """A monotonic instant as wall-clock time, to find it in the server's log."""
    return time.strftime("%H:%M:%S", time.localtime(time.time() - (time.monotonic() - monotonic)))


async def _read_execution_event(
    response: httpx.Response,
) -> tuple[str | None, dict[str, Any] | None]:
    """The final event of a streamed execute: ("execution", it), ("error", it), or (None, None)
    when the stream ended without either."""
    event = None
    async for line in response.aiter_lines():
        if line.startswith("event:"):
            event = line.partition(":")[2].strip()
        elif line.startswith("data:") and event in ("execution", "error"):
            return event, dict(json.loads(line.partition(":")[2]))
    return None, None
