"""`lci chat` without a question (or with -i): a plain read-eval-print loop over one `ChatSession`.

Each line is a question, asked in the same conversation and sandbox session. Line editing and
history come from readline (kept in `$XDG_STATE_HOME/lci/chat_history`, else
`~/.local/state/lci/chat_history`, when that can be written). Ctrl-C while a turn runs cancels the
turn (the running cell is interrupted, then killed; the session stays); Ctrl-C at the prompt clears
the line; Ctrl-D (end of input) ends the chat.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

from engine.cli.chat_session import ChatSession

PROMPT = "you> "


async def repl(chat: ChatSession, first: str = "") -> int:
    """Ask `first` (if any), then each line of input until end of input; the exit code of the last
    turn (0 if none ran)."""
    # Python's own handler at the prompt (asyncio.run's would cancel the whole chat).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    history = _history_file()
    interactive = sys.stdin.isatty()
    code = await _turn(chat, first) if first else 0
    if interactive:
        print("Ask a question (Ctrl-C stops a turn, Ctrl-D ends the chat).", flush=True)
    while True:
        try:
            line = input(PROMPT if interactive else "")
        except KeyboardInterrupt:
            print("^C", flush=True)
            continue
        except EOFError:
            if interactive:
                print(flush=True)
            break
        question = line.strip()
        if question:
            code = await _turn(chat, question)
    if history is not None:
        with contextlib.suppress(OSError):
            import readline

            readline.write_history_file(history)
    return code


async def _turn(chat: ChatSession, question: str) -> int:
    """One question; Ctrl-C cancels it (exit code 130 for the turn) instead of ending the chat."""
    task = asyncio.ensure_future(chat.ask(question))
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, task.cancel)
    try:
        return await task
    except asyncio.CancelledError:
        if not task.cancelled():
            raise  # the chat itself is being cancelled, not the turn
        print("\n(interrupted: the question was dropped; the session keeps its state)", flush=True)
        return 130
    finally:
        # Back to Python's handler: Ctrl-C at the prompt raises KeyboardInterrupt in input().
        loop.remove_signal_handler(signal.SIGINT)


def _history_file() -> Path | None:
    """Load readline's history (when stdin is a terminal and readline exists); the file to save it
    to, or None."""
    if not sys.stdin.isatty():
        return None
    try:
        import readline
    except ImportError:  # not every Python has it; input() still works
        return None
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    path = Path(base) / "lci" / "chat_history"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            readline.read_history_file(path)
    except OSError:
        return None
    readline.set_history_length(1000)
    return path
