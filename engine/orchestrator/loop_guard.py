"""Loop detection across rounds: when a model goes round in circles, it is steered to an answer.

Small models rarely repeat the previous call exactly; they alternate (A, A, B, B, C, C ...), re-run
code they ran three rounds ago, wander (`7**77`, then `7**86`), or hit the same error again and
again. The guard remembers every call of the conversation, so:

* a call whose code matches an earlier executed call (whitespace, comments and a `print(...)`
  around a lone expression aside) is not run again: the model gets the earlier result (unless
  that call failed and other code worked since, which may have fixed it);
* a call nearly identical to an earlier successful one still runs, but counts as a strike;
* an error the conversation already had counts as a strike;
* failed executions have a budget of their own;
* a call the model server cut off inside its code (at its token limit) is not run, and counts as
  a strike.

`max_repeats` strikes, or `max_failures` failed executions, force the final answer. With
`answer_after_repeat`, so does the first repeat of a successful call: the model already has that
result, and a small model that is only told so goes on to wander (`7**77` again, then `7**78`).
Repeats of failed calls are counted (`failed_repeats`) so the loop can ask such a round again
rather than keep it (see `LoopOptions.retry_temperature`).
"""

from __future__ import annotations

import difflib
import io
import re
import tokenize
from dataclasses import dataclass, field
from typing import Literal

from engine.models import Execution

ForceReason = Literal["max_rounds", "repeats", "errors"]

_SKIPPED = {tokenize.COMMENT, tokenize.NL, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER}
_PRINT = re.compile(r"^print \( (.*) \)$", re.DOTALL)
_NEAR = 0.9  # difflib ratio from which two codes count as nearly identical
_NEAR_MIN_CHARS = 24  # shorter codes differ meaningfully in a character or two


def normalize(code: str) -> str:
    """The code with comments and whitespace removed, and `print(x)` of a lone expression as `x`
    (the value of the last expression is shown either way)."""
    try:
        tokens = [
            "\n" if tok.type == tokenize.NEWLINE else tok.string
            for tok in tokenize.generate_tokens(io.StringIO(code).readline)
            if tok.type not in _SKIPPED
        ]
    except (tokenize.TokenError, SyntaxError):  # not Python: compare it as text
        tokens = code.split()
    text = " ".join(tokens).strip("\n ")
    match = _PRINT.match(text)
    if match and "\n" not in text:
        text = match.group(1)
    return text


def error_signature(execution: Execution) -> str | None:
    """What identifies an execution's failure: the exception's name and message."""
    if execution.error is None:
        return None
    return f"{execution.error.name}: {execution.error.value}"


@dataclass
class Earlier:
    """An executed call: its result as the model was given it, and whether it failed."""

    output: str
    failed: bool
    last: bool  # it is the most recent executed call


@dataclass
class LoopGuard:
    max_repeats: int
    max_failures: int
    answer_after_repeat: bool = False
    _results: dict[str, tuple[str, bool]] = field(default_factory=dict)  # normalized -> result
    _ran_at: dict[str, int] = field(default_factory=dict)  # normalized -> when it last ran
    _executed: int = 0  # executed calls so far (the clock of _ran_at)
    _last_success: int = -1  # when the last call that worked ran
    _errors: set[str] = field(default_factory=set)
    strikes: int = 0
    failures: int = 0
    reason: ForceReason | None = None
    last_output: str | None = None  # the most recent executed call's result
    failed_repeats: int = 0  # refused repeats of calls that failed

    def earlier(self, code: str) -> Earlier | None:
        """The result of an earlier call this code repeats, if it does. Code that failed before
        other code ran successfully is no repeat: it may work now (`print(math.pi)` after
        `import math`)."""
        key = normalize(code)
        result = self._results.get(key)
        if result is None:
            return None
        if result[1] and self._last_success > self._ran_at[key]:
            return None
        return Earlier(result[0], result[1], last=self._ran_at[key] == self._executed - 1)

    @property
    def nothing_worked(self) -> bool:
        """Code ran, and every execution failed."""
        return self._executed > 0 and self._last_success < 0

    def refused(self, earlier: Earlier | None = None) -> None:
        """A repeat (of the executed call `earlier`, if it was one) was not run."""
        self._strike()
        if earlier is not None and earlier.failed:
            self.failed_repeats += 1
        elif earlier is not None and self.answer_after_repeat and self.reason is None:
            self.reason = "repeats"

    def executed(self, code: str, output: str, execution: Execution) -> None:
        """Record an executed call and what it gave the model."""
        key = normalize(code)
        failed = not execution.ok
        if not failed and self._near_earlier_success(key):
            self._strike()
        if failed:
            self.failures += 1
            signature = error_signature(execution)
            if signature is not None and signature in self._errors:
                self._strike()
            if signature is not None:
                self._errors.add(signature)
            if self.failures >= self.max_failures and self.reason is None:
                self.reason = "errors"
        self._results[key] = (output, failed)
        self._ran_at[key] = self._executed
        if not failed:
            self._last_success = self._executed
        self._executed += 1
        self.last_output = output

    def _near_earlier_success(self, key: str) -> bool:
        if len(key) < _NEAR_MIN_CHARS:
            return False
        for other, (_, failed) in self._results.items():
            if failed or abs(len(other) - len(key)) > len(key) * (1 - _NEAR) * 2:
                continue
            if difflib.SequenceMatcher(None, key, other).ratio() >= _NEAR:
                return True
        return False

    def _strike(self) -> None:
        self.strikes += 1
        if self.strikes >= self.max_repeats and self.reason is None:
            self.reason = "repeats"
