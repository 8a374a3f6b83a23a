"""IPython's shell escapes in E2B cells: E2B runs code in a Jupyter (IPython) kernel, so clients send
`!pip install x` or `%pip install x` (smolagents' E2B executor does, for its tools' requirements).
lci's interpreter is plain Python; such lines become subprocess calls here.

Only code that is not valid Python is touched (a `!` inside a valid program is left alone):

    !cmd args        ->  _exit_code = subprocess.run("cmd args", shell=True).returncode
    !pip args        ->  the sandbox interpreter's pip: [sys.executable, "-m", "pip", args...]
    %pip args        ->  the same

As in IPython, the exit status lands in `_exit_code`. Other magics are left as they are (and fail
as the syntax errors they are in Python).
"""

from __future__ import annotations

import ast
import shlex

_RUN = "__import__('subprocess').run"
_PYTHON = "__import__('sys').executable"


def translate(code: str) -> str:
    try:
        ast.parse(code)
        return code
    except SyntaxError:
        pass
    return "\n".join(_line(line) for line in code.split("\n"))


def _line(line: str) -> str:
    stripped = line.lstrip()
    indent = line[: len(line) - len(stripped)]
    if stripped.startswith("%pip ") or stripped.startswith("!pip "):
        try:
            args = shlex.split(stripped[5:])
        except ValueError:
            return line
        call = f"{_RUN}([{_PYTHON}, '-m', 'pip', *{args!r}])"
    elif stripped.startswith("!") and stripped[1:].strip():
        call = f"{_RUN}({stripped[1:].strip()!r}, shell=True)"
    else:
        return line
    return f"{indent}_exit_code = {call}.returncode"
