"""Mending the closing brackets at the very end of a call's code.

Small models that write their call as JSON (`{"name": "code_interpreter", "arguments": {"code":
"...print(f(27))"}}`) often let the JSON's braces bleed into the code's last brackets: the code
arrives as `print(f(27)}` or `print(f(27)` and fails with a SyntaxError the model, shown it, copies
back unchanged. Only that tail is mended, and only when the code ends in closing brackets (code cut
off inside a bracket is not completed), does not compile as written, and compiles with the closers
its open brackets need; anything else is left for the model to fix.
"""

from __future__ import annotations

import io
import tokenize

_PAIRS = {"(": ")", "[": "]", "{": "}"}
_CLOSERS = ")]}"


def mend_closing_brackets(code: str) -> str:
    """`code`, or `code` with the run of closing brackets at its end replaced by the closers its
    open brackets need, if only that makes it compile."""
    if compiles(code) is not False:
        return code
    body = code.rstrip()
    stem = body.rstrip(_CLOSERS)
    tail = body[len(stem) :]
    needed = _closers_needed(stem)
    if not tail or needed is None or not _one_slip_apart(tail, needed):
        return code
    mended = stem + needed + code[len(body) :]
    return mended if compiles(mended) else code


def _one_slip_apart(written: str, needed: str) -> bool:
    """Whether `needed` is `written` with one closer changed, added or dropped: more than that
    is the model's own bug, not a slip at the end."""
    if len(written) == len(needed):
        return sum(a != b for a, b in zip(written, needed, strict=True)) == 1
    short, long = sorted((written, needed), key=len)
    if len(long) - len(short) != 1:
        return False
    return any(long[:i] + long[i + 1 :] == short for i in range(len(long)))


def compiles(code: str) -> bool | None:
    """Whether `code` compiles; None when that cannot be told (too large, too deep)."""
    try:
        compile(code, "<call>", "exec", dont_inherit=True)
    except SyntaxError:
        return False
    except (ValueError, OverflowError, RecursionError, MemoryError):
        return None
    return True


def _closers_needed(stem: str) -> str | None:
    """The closers of the brackets `stem` leaves open, innermost first; None when its brackets do
    not pair up or it cannot be tokenized (an unterminated string)."""
    stack: list[str] = []
    try:
        for token in tokenize.generate_tokens(io.StringIO(stem).readline):
            if token.type != tokenize.OP:
                continue
            if token.string in _PAIRS:
                stack.append(_PAIRS[token.string])
            elif token.string in _CLOSERS and (not stack or stack.pop() != token.string):
                return None
    except tokenize.TokenError:
        pass  # the end of input inside open brackets: the stack holds them
    except (SyntaxError, ValueError):
        return None
    return "".join(reversed(stack))
