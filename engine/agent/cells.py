"""A cell's source as code the kernel runs: the statements, and the final bare expression apart so
its value can be shown (unless a trailing `;` hides it, as in IPython). Source that does not compile
as Python goes through IPython's transformations (indentation, magics, `!cmd`) first; if it still
does not compile, the cell's own syntax error is reported, not the transformed code's."""

from __future__ import annotations

import ast
import linecache
import types
from collections.abc import Callable
from typing import NamedTuple

_FLAGS = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
_KEPT = 256  # compiled cells (and their linecache entries) kept before the cache starts over


class Compiled(NamedTuple):
    body: types.CodeType
    tail: types.CodeType | None  # the final bare expression, whose value is the cell's result
    quiet: bool  # the expression ends with `;`: its value is not shown


class CellCompiler:
    def __init__(self, transform: Callable[[str], str]) -> None:
        self._transform = transform  # source that does not compile -> Python
        self._compiled: dict[str, Compiled] = {}
        self._files: list[str] = []  # the linecache entries of cells, dropped with _compiled

    def compile(self, code: str, filename: str) -> Compiled:
        """Repeated cells reuse their compiled code. Raises the cell's SyntaxError."""
        cached = self._compiled.get(code)
        if cached is not None:
            return cached
        try:
            compiled = self._python(code, filename)
        except SyntaxError as error:
            # Every transformation rewrites only what Python rejects, so a cell that compiles
            # means the same to IPython and never pays for it.
            try:
                python = self._transform(code)
                if python == code:
                    raise error from None
                compiled = self._python(python, filename)
            except SyntaxError:
                raise error from None
        self._compiled[code] = compiled
        return compiled

    def _python(self, code: str, filename: str) -> Compiled:
        if len(self._files) >= _KEPT:
            # Every cell compiled adds a file (a cell that failed to compile too), so this also
            # caps _compiled. The cells' source lines go with their code, or linecache would keep
            # every cell ever run; only tracebacks through older cells' functions lose them.
            self._compiled.clear()
            for old in self._files:
                linecache.cache.pop(old, None)
            self._files.clear()
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        self._files.append(filename)
        tree = compile(code, filename, "exec", _FLAGS | ast.PyCF_ONLY_AST, dont_inherit=True)
        last_expr, quiet = None, False
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            expr = tree.body.pop().value
            last_expr = ast.Expression(expr)
            quiet = _ends_with_semicolon(code, expr)
        body = compile(tree, filename, "exec", _FLAGS, dont_inherit=True)
        tail = (
            compile(last_expr, filename, "eval", _FLAGS, dont_inherit=True) if last_expr else None
        )
        return Compiled(body, tail, quiet)


def _ends_with_semicolon(code: str, expr: ast.expr) -> bool:
    """Whether the first thing after `expr` (the cell's last statement) is a `;`."""
    if expr.end_lineno is None or expr.end_col_offset is None:
        return False
    lines = code.splitlines()
    end = lines[expr.end_lineno - 1].encode("utf-8")  # AST columns count UTF-8 bytes
    rest = [end[expr.end_col_offset :].decode("utf-8", "replace"), *lines[expr.end_lineno :]]
    return "\n".join(rest).lstrip().startswith(";")
