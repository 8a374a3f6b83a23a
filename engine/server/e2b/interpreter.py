"""E2B's code-interpreter server inside a sandbox (port 49999 in E2B), over lci sessions.

    POST   /execute                      run code; NDJSON lines as it runs (see `ndjson`)
    POST   /contexts                     a new context (its own lci session)
    GET    /contexts                     the sandbox's contexts, the default one first
    DELETE /contexts/{id}                close one (not the default)
    POST   /contexts/{id}/restart        a fresh interpreter, files kept
    GET    /health                       200 while the sandbox lives, 502 once it is gone

Python runs, and bash (see `bash`); another `language` is refused. IPython's `!cmd` and `%pip`
lines work (see `shell`). `env_vars` of one execution are set before it and restored after it, as
E2B does.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict

from engine.core.session import Session
from engine.errors import BadParameter, LCIError, SandboxNotFound
from engine.models import ErrorInfo, Execution, Outcome, OutputItem, ResultOutput, StreamOutput
from engine.server.e2b import bash, ndjson, shell
from engine.server.e2b.registry import Context, E2BSandbox
from engine.server.e2b.routing import PREFIX, Sandbox, sandbox_of
from engine.server.e2b.state import sandboxes
from engine.server.http.abort import abort
from engine.server.runtime.state import State, get_state

router = APIRouter(prefix=PREFIX, dependencies=[Depends(sandbox_of)], include_in_schema=False)

LANGUAGES = {"python", "py", "python3", bash.LANGUAGE}
PARTIAL_LINE_WAIT_S = 0.05


class ExecuteBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    code: str
    context_id: str | None = None
    language: str | None = None
    env_vars: dict[str, str] | None = None


class ContextBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    language: str | None = None
    cwd: str | None = None


@router.get("/health")
async def health(sandbox: Sandbox) -> Response:
    return Response('"OK"', media_type="application/json")


@router.post("/execute")
async def execute(
    body: ExecuteBody, request: Request, sandbox: Sandbox, state: State
) -> StreamingResponse:
    if body.context_id and body.language:
        raise BadParameter("give context_id or language, not both", "context_id")
    _check_language(body.language)
    registry = sandboxes(state)
    if body.context_id is not None:
        context = registry.context(sandbox, body.context_id)
    elif _language(body.language) == bash.LANGUAGE:
        context = await registry.bash_context(sandbox, default=True)
    else:
        context = sandbox.default
    killed = _killed(request, sandbox)
    if context.language == bash.LANGUAGE:
        stream = _run_bash(registry.session(sandbox), sandbox, context, body, killed)
    else:
        session = registry.session(sandbox, context.id)
        code = shell.translate(body.code)
        stream = _run(session, code, body.env_vars or {}, killed, _count(session, context))
    return StreamingResponse(stream, media_type="application/x-ndjson")


def _count(session: Session, context: Context) -> Callable[[], int]:
    return lambda: session.executions - context.hidden_cells


def _run_bash(
    session: Session,
    sandbox: E2BSandbox,
    context: Context,
    body: ExecuteBody,
    killed: Callable[[], bool],
) -> AsyncIterator[str]:
    """A bash cell: a Python cell of the default context's session, counted in the bash
    context's executions and left out of the default context's."""
    code = bash.cell(body.code, context.bash_state, context.cwd, body.env_vars or {})

    def count() -> int:
        context.bash_cells += 1
        sandbox.default.hidden_cells += 1
        return context.bash_cells

    return _run(session, code, {}, killed, count, bash.error)


def _killed(request: Request, sandbox: E2BSandbox) -> Callable[[], bool]:
    """Whether the sandbox is gone (killed, or its timeout passed): then the response's connection
    is dropped, as when an E2B sandbox dies under a running cell. The SDK sees the stream break,
    finds the sandbox no longer running and raises "The sandbox was killed while the request was
    in progress". False, and the stream ends with an error line, where the server cannot drop it."""

    def killed() -> bool:
        try:
            sandboxes(get_state(request)).get(sandbox.id)
        except SandboxNotFound:
            return abort(request.scope)
        return False

    return killed


@router.post("/contexts")
async def create_context(
    sandbox: Sandbox, state: State, body: ContextBody | None = None
) -> dict[str, str]:
    language = _check_language(body.language if body else None)
    if language == bash.LANGUAGE:
        context = await sandboxes(state).bash_context(sandbox, body.cwd if body else None)
    else:
        context = await sandboxes(state).create_context(sandbox)
    return _context(sandboxes(state).session(sandbox, context.id), context)


@router.get("/contexts")
async def list_contexts(sandbox: Sandbox, state: State) -> list[dict[str, str]]:
    contexts = [sandbox.default] + [
        c for c in sandbox.contexts.values() if c is not sandbox.default
    ]
    return [_context(sandboxes(state).session(sandbox, c.id), c) for c in contexts]


@router.delete("/contexts/{context_id}")
async def remove_context(context_id: str, sandbox: Sandbox, state: State) -> Response:
    await sandboxes(state).remove_context(sandbox, context_id)
    return Response(status_code=200)


@router.post("/contexts/{context_id}/restart")
async def restart_context(context_id: str, sandbox: Sandbox, state: State) -> Response:
    await sandboxes(state).restart_context(sandbox, context_id)
    return Response(status_code=200)


def _language(language: str | None) -> str:
    return "python" if language is None else language.strip().lower()


def _check_language(language: str | None) -> str:
    if _language(language) not in LANGUAGES:
        raise BadParameter(f"lci runs Python and bash only, not {language!r}", "language")
    return bash.LANGUAGE if _language(language) == bash.LANGUAGE else "python"


def _context(session: Session, context: Context) -> dict[str, str]:
    cwd = context.cwd or session.info().workdir
    return {"id": context.id, "language": context.language, "cwd": cwd}


async def _run(
    session: Session,
    code: str,
    env: dict[str, str],
    killed: Callable[[], bool],
    count: Callable[[], int],
    error_of: Callable[[Execution], ErrorInfo | None] = lambda e: e.error,
) -> AsyncIterator[str]:
    """The execution's lines as they happen; `count()` is its execution count, asked once it
    ended, and `error_of` its error as sent. Cancelled (the client went away), the cell is
    interrupted as every other lci execution is. Cut short by the sandbox's end, nothing more
    is sent if `killed()` dropped the connection."""
    queue: asyncio.Queue[OutputItem] = asyncio.Queue()
    run = asyncio.ensure_future(_execute(session, code, env, queue))
    main_result_sent = False
    try:
        while items := await _next_batch(queue, run):
            for item in _merged(items):
                main_result_sent |= isinstance(item, ResultOutput)
                yield ndjson.item_line(item)
        try:
            execution = run.result()
        except LCIError as exc:
            if killed():
                return
            yield ndjson.line(
                {"type": "error", "name": exc.code, "value": exc.message, "traceback": ""}
            )
            yield ndjson.line({"type": "unexpected_end_of_execution"})
            return
        if execution.outcome in (Outcome.CRASHED, Outcome.KILLED) and killed():
            return
        if execution.result is not None and not main_result_sent:
            yield ndjson.line(ndjson.result(execution.result))
        error = error_of(execution)
        if error is not None:
            yield ndjson.error_line(execution.model_copy(update={"error": error}))
        yield ndjson.end_lines(count())
    finally:
        if not run.done():
            run.cancel()
            with anyio.CancelScope(shield=True):
                await asyncio.wait({run})


async def _next_batch(
    queue: asyncio.Queue[OutputItem], run: asyncio.Future[Execution]
) -> list[OutputItem]:
    """The output items there are, waiting for one if there are none; [] once the run ended and
    everything was taken. A piece of a line is held back briefly for the rest of its line."""
    items: list[OutputItem] = []
    while True:
        while not queue.empty():
            items.append(queue.get_nowait())
        if items and not _partial_line(items[-1]):
            return items
        if run.done():
            return items
        getter = asyncio.ensure_future(queue.get())
        timeout = PARTIAL_LINE_WAIT_S if items else None
        waited: set[asyncio.Future[Any]] = {getter, run}
        await asyncio.wait(waited, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if getter.done():
            items.append(getter.result())
        else:
            getter.cancel()
            if items:
                return items


def _partial_line(item: OutputItem) -> bool:
    return isinstance(item, StreamOutput) and not item.text.endswith("\n")


def _merged(items: list[OutputItem]) -> list[OutputItem]:
    """Adjacent pieces of one stream as one message: `print` writes the text and its newline
    separately, and Jupyter (whose messages E2B forwards) would have sent them as one."""
    merged: list[OutputItem] = []
    for item in items:
        last = merged[-1] if merged else None
        if (
            isinstance(item, StreamOutput)
            and isinstance(last, StreamOutput)
            and last.name == item.name
        ):
            merged[-1] = StreamOutput(name=item.name, text=last.text + item.text)
        else:
            merged.append(item)
    return merged


async def _execute(
    session: Session, code: str, env: dict[str, str], queue: asyncio.Queue[OutputItem]
) -> Execution:
    if not env:
        return await session.execute(code, wait=True, on_output=queue.put_nowait)
    await session.execute(_SET_ENV.format(env=json.dumps(env)), wait=True)
    try:
        return await session.execute(code, wait=True, on_output=queue.put_nowait)
    finally:
        with anyio.CancelScope(shield=True):
            await session.execute(_RESTORE_ENV, wait=True)


# Run as cells of their own around the user's cell, so its output and last value stay its own.
_SET_ENV = """\
import os as _lci_os, json as _lci_json
_lci_env = _lci_json.loads({env!r})
_lci_saved_env = {{k: _lci_os.environ.get(k) for k in _lci_env}}
_lci_os.environ.update(_lci_env)
del _lci_env, _lci_json
"""
_RESTORE_ENV = """\
for _lci_k, _lci_v in _lci_saved_env.items():
    if _lci_v is None:
        _lci_os.environ.pop(_lci_k, None)
    else:
        _lci_os.environ[_lci_k] = _lci_v
del _lci_saved_env, _lci_os, _lci_k, _lci_v
"""
