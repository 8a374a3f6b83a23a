"""A run_python result sized for the model that reads it: at most the inline budget of the tool
loop (`LoopOptions.result_budget_bytes`, 16,000 bytes), whatever the session's output limit allows.

Past the budget every text field (stdout, stderr, result, displays, traceback) keeps its head and
tail around a marker, the larger fields giving up more, and the whole output is kept in the
session's working directory as `OUTPUT_FILE`, which the text names: the model can read the part it
needs with run_python, and a client can fetch it with download_file or as a resource.
"""

from __future__ import annotations

import json
from typing import Any

from mcp_types import CallToolResult, ContentBlock, TextContent

from engine.core.session import Session
from engine.errors import LCIError
from engine.orchestrator import LoopOptions, clip
from engine.server.mcp.render import file_uri

RESULT_BUDGET_BYTES: int = LoopOptions.model_fields["result_budget_bytes"].default
OUTPUT_FILE = ".lci/output.txt"
_LABELS = ("stdout", "stderr", "result")


async def sized_result(
    session: Session,
    body: dict[str, Any],
    images: list[ContentBlock],
    *,
    budget_bytes: int = RESULT_BUDGET_BYTES,
) -> CallToolResult:
    """The tool result of `body` (render.execution_body) and its images, the JSON text cut to
    `budget_bytes` if it is larger, the whole output then written to `OUTPUT_FILE` in `session`."""
    size = len(_text(body).encode())
    if size > budget_bytes:
        where = await _keep(session, _full_text(body))
        body["truncated"] = True
        body["full_output"] = where
        body["note"] = _note(body.get("note"), size, budget_bytes, session.id, where)
        _fit(body, budget_bytes)
    return CallToolResult(content=[TextContent(text=_text(body)), *images])


async def _keep(session: Session, text: str) -> str | None:
    try:
        await session.write_file(OUTPUT_FILE, text.encode("utf-8", errors="surrogatepass"))
    except LCIError:  # e.g. the session's disk is full: the note then says the rest is lost
        return None
    return OUTPUT_FILE


def _note(before: str | None, size: int, budget: int, session_id: str, where: str | None) -> str:
    cut = (
        f"The output ({size} bytes) is larger than the {budget} bytes sent inline, so each long "
        "field keeps its start and end around an '[... N bytes of output omitted ...]' marker."
    )
    if where is None:
        rest = " The whole output could not be kept (the session's disk is full)."
    else:
        rest = (
            f" The whole output is in the file {where} of the session's working directory "
            f"(replaced by the next cut output): read the part you need with run_python, e.g. "
            f"print(open({where!r}).read()[-3000:]), or fetch it with download_file or as the "
            f"resource {file_uri(session_id, where)}."
        )
    return " ".join(part for part in (before, cut + rest) if part)


def _full_text(body: dict[str, Any]) -> str:
    """The whole output as labelled sections, the form the tool loop sends a model."""
    sections = [(label, body.get(label) or "") for label in _LABELS]
    sections += [("display", text) for text in body.get("displays") or []]
    error = body.get("error")
    if error:
        sections.append(("error", error["traceback"] or f"{error['name']}: {error['value']}"))
    return "\n\n".join(f"{label}:\n{text}" for label, text in sections if text) + "\n"


def _fit(body: dict[str, Any], budget: int) -> None:
    """Cut the text fields of `body` so that its JSON fits in `budget` bytes."""
    slots: list[tuple[Any, Any]] = [(body, label) for label in _LABELS if body.get(label)]
    slots += [(body["displays"], i) for i in range(len(body.get("displays") or []))]
    if body.get("error"):
        slots.append((body["error"], "traceback"))
    originals = [container[key] for container, key in slots]
    for container, key in slots:
        container[key] = ""
    room = budget - len(_text(body).encode())
    # JSON escapes (newlines, quotes) make the text longer than the bytes it holds: shrink the
    # room by what is still over until it fits.
    for _ in range(8):
        caps = _shares([len(text.encode()) for text in originals], max(room, 0))
        for (container, key), text, cap in zip(slots, originals, caps, strict=True):
            container[key] = clip(text, cap)
        over = len(_text(body).encode()) - budget
        if over <= 0:
            return
        room -= over
    for container, key in slots:  # nothing left to share: the note still says where it all is
        container[key] = ""


def _shares(sizes: list[int], room: int) -> list[int]:
    """Split `room` among fields of `sizes`: small fields keep all they have, the large ones share
    the rest evenly."""
    caps = [0] * len(sizes)
    left = room
    order = sorted(range(len(sizes)), key=sizes.__getitem__)
    for n, i in enumerate(order):
        caps[i] = min(sizes[i], left // (len(order) - n))
        left -= caps[i]
    return caps


def _text(body: dict[str, Any]) -> str:
    return json.dumps(body, ensure_ascii=False)
