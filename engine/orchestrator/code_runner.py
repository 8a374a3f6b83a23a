"""The narrow interface through which the loop runs code. The orchestrator never imports the core:
the server and the CLI hand it an object with this shape (see `engine.session_runner.SessionRunner`)."""

from __future__ import annotations

from typing import Protocol

from engine.models import Execution


class CodeRunner(Protocol):
    async def execute(
        self,
        conversation_id: str,
        code: str,
        *,
        timeout_s: float | None = None,
        max_timeout_s: float | None = None,
    ) -> Execution:
        """Run `code` in the session of `conversation_id` (state persists between calls of one
        conversation, never across conversations) and return what happened. The execution's
        time limit is `timeout_s`, else the session's own; `max_timeout_s` caps either (the time
        left before a deadline).

        Errors, timeouts and crashes of the user code are reported in the Execution, not raised.
        Cancelling the awaiting task stops the running execution. Session-level failures (the
        sandbox cannot start, capacity) raise `engine.errors.LCIError`.
        """
        ...
