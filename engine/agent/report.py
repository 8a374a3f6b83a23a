"""A cell's exception as the host reports it: name, message and traceback, each within the text
budget, and with the agent's own frames left out wherever they sit (the cell's caller, a signal
handler that raised KeyboardInterrupt, the display code that called a failing __repr__)."""

from __future__ import annotations

import os
import traceback
import types
from collections.abc import Callable
from typing import Any

from .display import Clipper, plain_text_of_exception

AGENT_DIR = os.path.dirname(os.path.abspath(__file__))


def _user_frames(te: traceback.TracebackException, budget: int, seen: set[int]) -> None:
    """Drop agent frames and cut oversized messages in `te` and every exception chained to it
    (before formatting: a 64 MB message is never copied into a traceback)."""
    if id(te) in seen:
        return
    seen.add(id(te))
    kept = [f for f in te.stack if os.path.dirname(f.filename) != AGENT_DIR]
    if len(kept) != len(te.stack):
        te.stack = traceback.StackSummary.from_list(kept)
    message = getattr(te, "_str", None)
    if isinstance(message, str) and len(message) > budget:
        te._str = Clipper()(message, budget)  # type: ignore[attr-defined]
    for linked in (te.__cause__, te.__context__, *(getattr(te, "exceptions", None) or ())):
        if linked is not None:
            _user_frames(linked, budget, seen)


def user_traceback(tb: types.TracebackType | None) -> types.TracebackType | None:
    """`tb` without the agent's frames (the cell's caller, a signal handler that raised
    KeyboardInterrupt, the display code that called a failing __repr__), as a new chain."""
    kept = []
    while tb is not None:
        if os.path.dirname(tb.tb_frame.f_code.co_filename) != AGENT_DIR:
            kept.append(tb)
        tb = tb.tb_next
    chain = None
    for entry in reversed(kept):
        chain = types.TracebackType(chain, entry.tb_frame, entry.tb_lasti, entry.tb_lineno)
    return chain


def error_info(
    exc: BaseException,
    budget: int,
    clip: Clipper,
    formatter: Callable[[BaseException], str | None] | None = None,
) -> dict[str, Any]:
    """The exception as the host reports it; its traceback as `formatter` writes it (IPython's,
    where the kernel has a shell) or else as Python writes it."""
    text = None
    if formatter is not None and len(plain_text_of_exception(exc, budget + 1)) <= budget:
        try:
            text = formatter(exc)
        except Exception:
            text = None
    if text is None:
        try:
            te = traceback.TracebackException(type(exc), exc, exc.__traceback__, compact=True)
            _user_frames(te, budget, set())
            text = "".join(te.format())
        except Exception as fmt_exc:
            text = f"<traceback could not be formatted: {fmt_exc!r}>"
    return {
        "name": type(exc).__name__,
        "value": plain_text_of_exception(exc, budget, clip),
        "traceback": clip(text, budget),
    }
