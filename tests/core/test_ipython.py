"""Cells behave as in an IPython kernel, on both backends: indented code, magics and `!cmd`, IPython's
display system, the trailing `;`, the output history (`_`, `__`, `Out`, `In`), and streams that a
cell replaced do not swallow later cells' output. Without IPython, indentation still goes."""

from __future__ import annotations

import json
import re

from engine.config import Settings
from engine.core.manager import SessionManager
from engine.core.session import Session
from engine.models import BackendName, SessionSpec
from tests.conftest import TEST_LIMITS


def displays(result: object) -> list[dict[str, str]]:
    return [o.data for o in result.outputs if o.type == "display"]  # type: ignore[attr-defined]


async def test_indented_cells_run_as_ipython_runs_them(session: Session) -> None:
    # How code arrives from a triple-quoted string inside a function.
    code = (
        "\n    import pandas as pd\n    df = pd.DataFrame({'a': [1, 2]})\n    int(df.a.sum())\n    "
    )
    result = await session.execute(code)
    assert result.error is None, result
    assert result.result_text == "3"
    # Valid Python keeps its meaning: a real indentation error is still reported as such.
    broken = await session.execute("x = 1\n  y = 2")
    assert broken.error is not None and broken.error.name == "IndentationError"


async def test_line_and_cell_magics(session: Session) -> None:
    timed = await session.execute("%time total = sum(range(1000))\ntotal")
    assert timed.error is None, timed
    assert "Wall time" in timed.stdout and timed.result_text == "499500"
    written = await session.execute("%%writefile notes.txt\nfirst line\nsecond line\n")
    assert written.error is None, written
    assert (await session.execute("open('notes.txt').read()")).result_text == repr(
        "first line\nsecond line\n"
    )
    env = await session.execute("%env LCI_TEST_VAR=hello\nimport os\nos.environ['LCI_TEST_VAR']")
    assert env.result_text == "'hello'", env
    many = await session.execute("%timeit -n 3 -r 2 sum(range(100))")
    assert "per loop" in many.stdout, many
    who = await session.execute("%who")
    # The user's names, not the kernel's own (In, Out, display, get_ipython).
    assert "total" in who.stdout and "get_ipython" not in who.stdout and "Out" not in who.stdout


async def test_shell_escapes_print_into_the_cell_and_set_the_exit_code(session: Session) -> None:
    result = await session.execute("!echo from-the-shell\n!exit 3\n_exit_code")
    assert result.error is None, result
    assert result.stdout == "from-the-shell\n" and result.result_text == "3"


async def test_ipython_display_system(session: Session) -> None:
    code = (
        "from IPython.display import display, HTML, Markdown, Latex, SVG, JSON, Image\n"
        "display(HTML('<b>bold</b>'))\n"
        "display(Markdown('# Title'))\n"
        "display(Latex(r'$x^2$'))\n"
        "display(SVG('<svg xmlns=\"http://www.w3.org/2000/svg\"></svg>'))\n"
        "display(JSON({'k': [1, 2]}))\n"
        "display({'text/html': '<i>raw</i>', 'text/plain': 'raw'}, raw=True)\n"
        "import base64\n"
        "png = base64.b64decode('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
        "YPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==')\n"
        "display(Image(data=png))\n"
        "HTML('<p>last</p>')"
    )
    result = await session.execute(code)
    assert result.error is None, result
    shown = displays(result)
    assert shown[0]["text/html"] == "<b>bold</b>"
    assert shown[1]["text/markdown"] == "# Title"
    assert shown[2]["text/latex"] == "$x^2$"
    assert shown[3]["image/svg+xml"].startswith("<svg")
    assert json.loads(shown[4]["application/json"]) == {"k": [1, 2]}
    assert shown[5] == {"text/html": "<i>raw</i>", "text/plain": "raw"}
    assert shown[6]["image/png"].startswith("iVBORw0KGgo")
    assert result.result is not None and result.result.data["text/html"] == "<p>last</p>"


async def test_objects_that_display_themselves(session: Session) -> None:
    code = (
        "from IPython.display import display\n"
        "class Widget:\n"
        "    def _ipython_display_(self):\n"
        "        display({'text/plain': 'a widget', 'text/html': '<w/>'}, raw=True)\n"
        "Widget()"
    )
    result = await session.execute(code)
    assert result.error is None, result
    assert result.result is None
    assert displays(result) == [{"text/html": "<w/>", "text/plain": "a widget"}]


async def test_trailing_semicolon_and_output_history(session: Session) -> None:
    assert (await session.execute("x = 40\nx + 1")).result_text == "41"  # Out[1]
    quiet = await session.execute("x + 2;  # no result, as in IPython")
    assert quiet.result is None and quiet.error is None
    assert (await session.execute("x + 3")).result_text == "43"  # Out[3]
    assert (await session.execute("(_, __)")).result_text == "(43, 41)"
    assert (await session.execute("(Out[1], _3, In[2])")).result_text == (
        "(41, 43, 'x + 2;  # no result, as in IPython')"
    )
    text = await session.execute("'a;b'")  # a `;` inside a string is not the last token
    assert text.result_text == "'a;b'"


async def test_a_replaced_stream_does_not_swallow_later_cells(session: Session) -> None:
    await session.execute("import io, os, sys\nsys.stdout = io.StringIO()\nprint('hidden')")
    after = await session.execute("print('visible')")
    assert after.stdout == "visible\n", after
    await session.execute("sys.stderr = open(os.devnull, 'w')")
    err = await session.execute("print('to stderr', file=sys.stderr)")
    assert err.stderr == "to stderr\n", err


async def test_errors_come_in_ipythons_format(session: Session) -> None:
    """From the start in a fork-server session; in a cold one (docker without a pool here) once
    the kernel has its shell, which `get_ipython()` makes."""
    await session.execute("get_ipython()")
    failed = await session.execute("x = 1\nraise ValueError('bad value')")
    assert failed.error is not None
    # The cell as `Cell In[N]` (IPython 8.5: `In [N]`), an arrow at the failing line.
    assert re.search(r"Cell In ?\[2\], line 2", failed.error.traceback), failed.error.traceback
    assert "----> 2 raise ValueError" in failed.error.traceback
    assert "kernel.py" not in failed.error.traceback
    syntax = await session.execute("def f(:\n    pass")
    assert syntax.error is not None and syntax.error.traceback.startswith('  File "<cell-3>"')


async def test_get_ipython_is_the_shell(session: Session) -> None:
    result = await session.execute("type(get_ipython()).__name__")
    assert result.result_text == "'InteractiveShell'"


async def test_a_cold_kernel_makes_its_shell_when_ipython_is_imported(tmp_path: object) -> None:
    """No fork server and nothing preloaded: the first `import IPython` makes the shell, so its
    `display` reaches the host at once."""
    settings = Settings(state_dir=tmp_path, limits=TEST_LIMITS, forkserver=False, preload=[])  # type: ignore[arg-type]
    async with SessionManager(settings) as manager:
        session = await manager.create(SessionSpec(backend=BackendName.SUBPROCESS))
        result = await session.execute(
            "from IPython.display import display, HTML\ndisplay(HTML('<b>x</b>'))"
        )
        assert displays(result) == [
            {"text/html": "<b>x</b>", "text/plain": "<IPython.core.display.HTML object>"}
        ]


async def test_without_ipython_indentation_still_goes(tmp_path: object) -> None:
    settings = Settings(state_dir=tmp_path, limits=TEST_LIMITS, forkserver=False, preload=[])  # type: ignore[arg-type]
    async with SessionManager(settings) as manager:
        session = await manager.create(SessionSpec(backend=BackendName.SUBPROCESS))
        await session.execute("import sys\nsys.modules['IPython'] = None  # as if not installed")
        indented = await session.execute("\n    a = 2\n    a * 21\n")
        assert indented.result_text == "42", indented
        magic = await session.execute("%time 1")
        assert magic.error is not None and magic.error.name == "SyntaxError"
        plain = await session.execute("display({'text/plain': 'p'}, raw=True)")
        assert displays(plain) == [{"text/plain": "p"}]
