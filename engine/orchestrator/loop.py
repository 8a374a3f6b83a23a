"""The code-interpreter loop: the driver of its rounds (docs/conformance/common.md, the tool loop).

Round k sends the conversation and the `code_interpreter` tool to the model and streams its
reasoning, text and tool calls. If it called the tool, each call's code runs in the conversation's
session, the assistant message and one tool message per call are appended, and round k+1 follows;
otherwise its text is the answer. See `events` for the order of what `Orchestrator.run` yields.
Each call is handled by `code_calls` (code_interpreter) or `web.calls` (the web tools).

Failures of the user's code are results for the model, never the end of the loop. What ends it early
is an `ErrorEvent`: the model server failing (after bounded retries), the deadline, or the runner
unable to provide a session. Cancelling the consuming task (or closing the generator) stops the
round's stream and the running execution.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any, Literal

from engine import observe
from engine.errors import LCIError, UpstreamError
from engine.orchestrator.calls import ToolCall
from engine.orchestrator.code_calls import run_code_call
from engine.orchestrator.code_runner import CodeRunner
from engine.orchestrator.events import (
    CodeStart,
    Event,
    Final,
    ReasoningDelta,
    RoundStart,
    TextDelta,
    UsageEvent,
)
from engine.orchestrator.loop_guard import ForceReason, LoopGuard
from engine.orchestrator.options import LoopOptions
from engine.orchestrator.round import Round
from engine.orchestrator.run_state import DeadlineExceeded, RunState
from engine.orchestrator.shell import (
    SHELL_DEFINITION,
    SHELL_ONLY_PROMPT,
    SHELL_PROMPT,
    SHELL_TOOL,
    CommandRunner,
)
from engine.orchestrator.shell_calls import refuse_call, run_shell_call
from engine.orchestrator.textcalls import TextScanner
from engine.orchestrator.tool import (
    FINAL_INSTRUCTION,
    NOTHING_WORKED_INSTRUCTION,
    TOOL_DEFINITION,
    fallback_answer,
)
from engine.orchestrator.upstream import Chunk, RoundRequest, StreamInterrupted, Upstream
from engine.orchestrator.web.calls import run_web_call
from engine.orchestrator.web.tools import DEFINITIONS as WEB_DEFINITIONS
from engine.orchestrator.web.tools import WebTools, web_prompt


class Orchestrator:
    def __init__(
        self,
        upstream: Upstream,
        runner: CodeRunner,
        model: str = "default",
        web: WebTools | None = None,
        shell: CommandRunner | None = None,
    ) -> None:
        self.upstream = upstream
        self.runner = runner
        self.model = model
        self.web = web  # the web tools' providers; None: no web tools
        self.shell = shell  # runs the shell tool's commands; None: no shell tool

    async def run(
        self,
        messages: list[dict[str, Any]],
        *,
        conversation_id: str,
        options: LoopOptions | None = None,
    ) -> AsyncGenerator[Event, None]:
        """Run the loop on a copy of `messages` (OpenAI chat messages), yielding events until the
        one terminal `Final` or `ErrorEvent`. Code runs in `conversation_id`'s session."""
        options = options or LoopOptions()
        loop = asyncio.get_running_loop()
        available = self.web.available if self.web is not None else frozenset()
        web_tools = tuple(name for name in options.web_tools if name in available)
        shell = options.shell and self.shell is not None
        state = RunState(
            conversation_id,
            options,
            _prepare(messages, options, web_tools, shell),
            None if options.deadline_s is None else loop.time() + options.deadline_s,
            LoopGuard(options.max_repeats, options.max_failures, options.answer_after_repeat),
            web_tools=web_tools,
            shell=shell,
        )
        try:
            async with aclosing(self._rounds(state)) as events:
                async for event in events:
                    yield event
        except UpstreamError as exc:
            yield state.error(exc.code, exc.message, exc.status)
        except DeadlineExceeded:
            yield state.error(
                "deadline_exceeded", f"the request did not finish within {options.deadline_s:g} s"
            )
        except LCIError as exc:
            yield state.error(exc.code, exc.message)

    async def _rounds(self, state: RunState) -> AsyncGenerator[Event, None]:
        options = state.options
        while True:
            state.rounds += 1
            last = state.rounds >= options.max_rounds
            forced: ForceReason | None = state.guard.reason
            if forced is None and last and options.on_max_rounds == "final_call":
                forced = "max_rounds"
            yield RoundStart(round=state.rounds, final_call=forced is not None)
            blocks = options.python_blocks
            python = not state.native_seen if blocks == "auto" else bool(blocks)
            python = python and options.code_interpreter
            scanner = TextScanner(enabled=options.text_calls, python=python)
            announce = not (forced or last) and options.code_interpreter
            others = (*state.web_tools, SHELL_TOOL) if state.shell else state.web_tools
            rnd = Round(state.rounds, scanner, announce, others)
            observe.get().loop_round()
            with observe.span("model.round", round=rnd.number):
                async with aclosing(self._stream_round(state, rnd, forced is not None)) as events:
                    async for event in events:
                        yield event
            if rnd.usage is not None:
                observe.get().upstream_tokens(rnd.usage.input_tokens, rnd.usage.output_tokens)
                state.usage += rnd.usage
                yield UsageEvent(round=rnd.number, usage=rnd.usage, total=state.usage)
            calls = rnd.calls()
            if calls and rnd.finish_reason == "length":
                calls[-1].end_of_cut_reply()
            state.native_seen = state.native_seen or bool(rnd.native)
            if not calls or last or forced:
                for event in self._final(state, rnd, calls, forced):
                    yield event
                return
            kept, failed_repeats = len(state.messages), state.guard.failed_repeats
            state.messages.append(rnd.assistant_message(calls))
            for call in calls:
                with observe.span("tool.call", round=rnd.number, tool=call.name or ""):
                    async with aclosing(self._run_call(state, rnd, call)) as events:
                        async for event in events:
                            yield event
            state.retrying = False
            refused = state.guard.failed_repeats - failed_repeats + sum(c.cut_off for c in calls)
            if refused == len(calls) and options.retry_temperature is not None:
                # Nothing but failing code sent again, or code cut off by the token limit: the
                # round is asked anew, less greedily, without it, as in the conversation it only
                # invites the same again.
                del state.messages[kept:]
                state.reasked += 1
                state.retrying = True

    def _final(
        self, state: RunState, rnd: Round, calls: list[ToolCall], forced: ForceReason | None
    ) -> list[Event]:
        """The end of the loop: the model's answer, honest about how it ended, and never empty.
        A call the model still makes when it may not (a forced final round, or the last round
        with on_max_rounds=stop) is not run and its markup is not shown."""
        text = rnd.scanner.visible
        events: list[Event] = []
        incomplete: Literal["max_tokens", "max_rounds"] | None = None
        if rnd.finish_reason == "length":
            incomplete = "max_tokens"  # the model server cut the reply at its token limit
        elif calls and forced is None:
            incomplete = "max_rounds"  # on_max_rounds=stop: it still wanted to run code
        fallback = False
        if (calls and forced is not None) or not text.strip():
            note = fallback_answer(state.guard.last_output, wanted_code=bool(calls))
            note = f"\n\n{note}" if text.strip() else note
            events.append(TextDelta(round=rnd.number, text=note))
            text, fallback = text + note, True
        events.append(
            Final(
                text=text,
                finish_reason="stop" if incomplete is None else "length",
                incomplete=incomplete,
                fallback=fallback,
                forced=forced,
                rounds=state.rounds,
                executions=state.executions,
                usage=state.usage,
            )
        )
        return events

    async def _stream_round(
        self, state: RunState, rnd: Round, final_call: bool
    ) -> AsyncGenerator[Event, None]:
        if final_call:  # no tools, and an explicit request for the answer
            ask = NOTHING_WORKED_INSTRUCTION if state.guard.nothing_worked else FINAL_INSTRUCTION
            messages = [*state.messages, {"role": "user", "content": ask}]
            request = RoundRequest(
                state.options.model or self.model, messages, [], params=state.options.params
            )
        else:
            first = state.rounds == 1
            request = RoundRequest(
                model=state.options.model or self.model,
                messages=state.messages,
                tools=_tools(state),
                tool_choice=state.options.tool_choice if first else "auto",
                params=_round_params(state),
            )
        for attempt in range(state.options.stream_retries + 1):
            try:
                async with aclosing(self._stream_once(state, rnd, request)) as events:
                    async for event in events:
                        yield event
                return
            except StreamInterrupted as exc:
                if rnd.shown or attempt == state.options.stream_retries:
                    raise UpstreamError(
                        f"the model server's stream broke off: {exc}", exc.status or 502
                    ) from exc
                rnd.reset()  # nothing of this round was shown, so it can be asked for anew

    async def _stream_once(
        self, state: RunState, rnd: Round, request: RoundRequest
    ) -> AsyncGenerator[Event, None]:
        chunks = self.upstream.stream(request)
        started, outcome = time.perf_counter(), "error"
        try:
            with observe.span("upstream.call", round=rnd.number, model=request.model):
                async with aclosing(self._chunks(state, rnd, chunks)) as events:
                    async for event in events:
                        yield event
            outcome = "ok"
        except DeadlineExceeded:
            outcome = "deadline"
            raise
        except (GeneratorExit, asyncio.CancelledError):
            outcome = "cancelled"  # the client went away: no fault of the model server
            raise
        finally:
            observe.get().upstream_called(outcome, time.perf_counter() - started)

    async def _chunks(
        self, state: RunState, rnd: Round, chunks: AsyncGenerator[Chunk, None]
    ) -> AsyncGenerator[Event, None]:
        try:
            while True:
                try:
                    async with asyncio.timeout_at(state.deadline):
                        chunk = await anext(chunks)
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    raise DeadlineExceeded from None
                for event in self._absorb(rnd, chunk):
                    rnd.shown = True
                    yield event
            if text := rnd.scanner.finish():
                yield TextDelta(round=rnd.number, text=text)
        finally:
            await chunks.aclose()

    def _absorb(self, rnd: Round, chunk: Chunk) -> list[Event]:
        events: list[Event] = []
        if chunk.usage is not None:
            rnd.usage = chunk.usage  # a round's usage is cumulative: the last report wins
        if chunk.finish_reason is not None:
            rnd.finish_reason = chunk.finish_reason
        if chunk.reasoning:
            rnd.reasoning += chunk.reasoning
            rnd.reasoning_field = chunk.reasoning_field or rnd.reasoning_field
            events.append(ReasoningDelta(round=rnd.number, text=chunk.reasoning))
        if chunk.text and (text := rnd.scanner.feed(chunk.text)):
            events.append(TextDelta(round=rnd.number, text=text))
        for frag in chunk.tool_calls:
            started = rnd.native.add(frag.index, frag.id, frag.name, frag.arguments)
            # A web call is no code call; a call whose name comes later may be one.
            code = not rnd.web_tools or (frag.name is not None and frag.name not in rnd.web_tools)
            if started and rnd.announce and code:
                rnd.announced.add(started)
                events.append(CodeStart(round=rnd.number, call_id=started))
        return events

    async def _run_call(
        self, state: RunState, rnd: Round, call: ToolCall
    ) -> AsyncGenerator[Event, None]:
        if call.name in state.web_tools and self.web is not None:
            events = run_web_call(self.web, state.web, state.messages, rnd.number, call)
        elif call.name == SHELL_TOOL and state.shell and self.shell is not None:
            events = run_shell_call(self.shell, state, rnd.number, call)
        elif not state.options.code_interpreter:
            for event in refuse_call(state, rnd.number, call):
                yield event
            return
        else:
            events = run_code_call(self.runner, state, rnd, call)
        try:
            async with aclosing(events):
                async for event in events:
                    yield event
        except TimeoutError:  # a web call outlived the deadline (a code call raises its own)
            raise DeadlineExceeded from None


def _round_params(state: RunState) -> dict[str, Any]:
    """The request's extra fields for a round that offers tools. A round asked again is sampled
    at `retry_temperature` at least, and with another seed if the request gives one (the same
    seed on the same conversation would give the same reply)."""
    params, floor = state.options.params, state.options.retry_temperature
    if not state.retrying or floor is None:
        return params
    temperature = params.get("temperature")
    retry = {**params, "temperature": max(temperature, floor) if temperature else floor}
    if isinstance(params.get("seed"), int):
        retry["seed"] = params["seed"] + state.reasked
    return retry


def _tools(state: RunState) -> list[dict[str, Any]]:
    """The tool definitions a round offers."""
    tools = [TOOL_DEFINITION] if state.options.code_interpreter else []
    tools += [SHELL_DEFINITION] if state.shell else []
    return tools + [WEB_DEFINITIONS[name] for name in state.web_tools]


def _prepare(
    messages: list[dict[str, Any]], options: LoopOptions, web_tools: tuple[str, ...], shell: bool
) -> list[dict[str, Any]]:
    """A copy of the conversation, with the default system prompt in front unless it has its own
    (saying which web tools there are, if any, and what the shell is; a shell-only run gets a
    prompt of its own)."""
    prepared = [dict(message) for message in messages]
    has_own = bool(prepared) and prepared[0].get("role") in ("system", "developer")
    if options.system_prompt and not has_own:
        prompt = options.system_prompt if options.code_interpreter else SHELL_ONLY_PROMPT
        prompt += f" {SHELL_PROMPT}" if shell and options.code_interpreter else ""
        prompt += web_prompt(web_tools)
        prepared.insert(0, {"role": "system", "content": prompt})
    return prepared
