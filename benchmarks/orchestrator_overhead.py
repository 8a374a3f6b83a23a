"""Orchestrator overhead per round, excluding model and execution time.

A conversation of two rounds is replayed many times: round 1 streams reasoning and a fragmented
`code_interpreter` call (vLLM style), the call "runs" in a runner that returns a prepared Execution
at once, round 2 streams the answer. The time per round is what the loop itself costs, measured
three ways:

* loop:     chunks already normalized, handed over in memory (the loop alone: event building,
            call accumulation, text scanning, result rendering, history);
* loop+sdk: the same stream as SSE bytes through the openai SDK on an in-memory HTTP transport
            (adds request encoding, SSE decoding, chunk parsing: the whole client side);
* loopback: the fake model server over real HTTP on 127.0.0.1 (adds sockets and the fake server's
            own Python time, which is not ours; for reference).

    python -m benchmarks.orchestrator_overhead [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import AsyncGenerator
from typing import Any

import httpx2

from benchmarks.common import progress, save, summarize
from engine.models import Execution, Limits, Outcome, ResultOutput
from engine.orchestrator import LoopOptions, Orchestrator, UpstreamClient
from engine.orchestrator.upstream import Chunk, RoundRequest, normalize
from tests.fake_llm import SSE, FakeLLM, stream

QUESTION = [{"role": "user", "content": "What is 123 to the power 21?"}]
POWER = "77269364466549865653073473388030061522211723"
ROUNDS = 2


def turns() -> list[SSE]:
    reasoning = "The user wants 123**21; Python integers are exact, so I will compute it. " * 3
    return [
        stream(reasoning=reasoning, calls=["123**21"], piece=8),
        stream(text=f"123 to the power 21 is {POWER}.", piece=8),
    ]


def sse_bytes(turn: SSE) -> bytes:
    events = [e if isinstance(e, str) else json.dumps(e) for e in turn.events] + ["[DONE]"]
    return "".join(f"data: {e}\n\n" for e in events).encode()


class InstantRunner:
    """Returns a prepared Execution without running anything."""

    def __init__(self) -> None:
        self.execution = Execution(
            id="e1",
            session_id="s1",
            outcome=Outcome.COMPLETED,
            limits=Limits(),
            outputs=[ResultOutput(data={"text/plain": POWER})],
        )

    async def execute(
        self,
        conversation_id: str,
        code: str,
        *,
        timeout_s: float | None = None,
        max_timeout_s: float | None = None,
    ) -> Execution:
        return self.execution


class MemoryUpstream:
    """Hands over chunks normalized in advance, turn after turn."""

    def __init__(self) -> None:
        self.rounds = [[normalize(e) for e in t.events if isinstance(e, dict)] for t in turns()]
        self.next = 0

    async def stream(self, request: RoundRequest) -> AsyncGenerator[Chunk, None]:
        chunks = self.rounds[self.next % len(self.rounds)]
        self.next += 1
        for chunk in chunks:
            yield chunk


def memory_transport() -> httpx2.AsyncClient:
    bodies = [sse_bytes(t) for t in turns()]
    served = 0

    def handler(request: httpx2.Request) -> httpx2.Response:
        nonlocal served
        body = bodies[served % len(bodies)]
        served += 1
        return httpx2.Response(200, content=body, headers={"content-type": "text/event-stream"})

    return httpx2.AsyncClient(transport=httpx2.MockTransport(handler))


async def per_round(orchestrator: Orchestrator, count: int, label: str) -> list[float]:
    options = LoopOptions(deadline_s=None)
    samples = []
    for i in range(count + count // 10):  # the first tenth warms up
        started = time.perf_counter()
        async for event in orchestrator.run(QUESTION, conversation_id="c", options=options):
            last = event
        elapsed = time.perf_counter() - started
        assert last.type == "final" and POWER in last.text, last
        if i >= count // 10:
            samples.append(elapsed / ROUNDS)
        if (i + 1) % max(1, count // 4) == 0:
            progress(f"{label}: {i + 1}/{count + count // 10}")
    return samples


async def measure(count: int) -> dict[str, list[float]]:
    runner = InstantRunner()
    loop_only = await per_round(Orchestrator(MemoryUpstream(), runner), count, "loop")
    async with UpstreamClient("http://model.invalid/v1", http_client=memory_transport()) as up:
        with_sdk = await per_round(Orchestrator(up, runner), count, "loop+sdk")
    with FakeLLM() as llm:
        llm.script(*(turns() * (count + count // 10)))
        async with UpstreamClient(llm.base_url) as up:
            loopback = await per_round(Orchestrator(up, runner), count, "loopback")
    return {"loop": loop_only, "loop+sdk": with_sdk, "loopback": loopback}


def report(name: str, stats: dict[str, float], note: str = "") -> None:
    print(f"{name:<34} p50 {stats['p50_ms']:.3f} ms  p99 {stats['p99_ms']:.3f} ms{note}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small sample counts (CI)")
    args = parser.parse_args()
    count = 200 if args.quick else 2000
    progress(f"orchestrator overhead: {count} two-round conversations per variant")
    samples = asyncio.run(measure(count))
    stats = {name: summarize(values) for name, values in samples.items()}
    results: dict[str, Any] = {f"per_round_{k}": v for k, v in stats.items()}
    results["targets"] = {"per_round_loop+sdk_p50_ms": "< 1"}
    path = save(
        "orchestrator_overhead",
        results,
        {f"{k} per round (p50)": v["p50_ms"] for k, v in stats.items()},
        "milliseconds per round (log scale)",
    )
    sdk = stats["loop+sdk"]["p50_ms"]
    verdict = f"  (target < 1 ms: {'met' if sdk < 1 else 'MISSED'})"
    report("loop only, per round", stats["loop"])
    report("loop + openai SDK, per round", stats["loop+sdk"], verdict)
    report("loopback HTTP fake server, per round", stats["loopback"], "  (reference)")
    print(f"results: {path} (+ .png)")


if __name__ == "__main__":
    main()
