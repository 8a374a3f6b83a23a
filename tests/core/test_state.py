"""Notebook semantics: state across cells, display of the last expression, errors as data."""

from __future__ import annotations

import base64

from engine.core.session import Session
from engine.models import DisplayOutput, Outcome, StreamOutput


async def test_variables_imports_functions_and_classes_persist(session: Session) -> None:
    cells = [
        "import math\nx = 6 * 7",
        "def square(n):\n    return n * n",
        "class Box:\n    def __init__(self, v):\n        self.v = v",
        "Box(square(x)).v + math.floor(0.5)",
    ]
    results = [await session.execute(code) for code in cells]
    assert [r.outcome for r in results] == [Outcome.COMPLETED] * 4
    assert results[-1].result_text == "1764"


async def test_files_persist_between_cells(session: Session) -> None:
    await session.execute("with open('notes.txt', 'w') as f:\n    f.write('kept')")
    result = await session.execute("open('notes.txt').read()")
    assert result.result_text == "'kept'"


async def test_last_expression_is_displayed(session: Session) -> None:
    result = await session.execute("123**21")
    assert result.result_text == "77269364466549865653073473388030061522211723"
    assert (await session.execute("x = 1")).result is None
    assert (await session.execute("None")).result is None
    assert (await session.execute("y = 2\ny + 1  # comment")).result_text == "3"


async def test_print_and_stderr_are_separate_streams(session: Session) -> None:
    code = "import sys, warnings\nprint('out')\nprint('err', file=sys.stderr)\nwarnings.warn('careful')"
    result = await session.execute(code)
    assert result.stdout == "out\n"
    assert "err\n" in result.stderr and "careful" in result.stderr
    assert result.outcome is Outcome.COMPLETED


async def test_subprocess_output_is_captured(session: Session) -> None:
    result = await session.execute("import subprocess\nsubprocess.run(['echo', 'from child'])")
    assert "from child" in result.stdout


async def test_exception_is_data_and_state_survives(session: Session) -> None:
    await session.execute("counter = 10")
    failed = await session.execute("counter += 1\nraise ValueError('bad value')")
    assert failed.outcome is Outcome.ERROR
    assert failed.error is not None
    assert (failed.error.name, failed.error.value) == ("ValueError", "bad value")
    assert "raise ValueError('bad value')" in failed.error.traceback
    assert "kernel.py" not in failed.error.traceback  # agent frames are trimmed
    assert failed.state_preserved
    assert (await session.execute("counter")).result_text == "11"


async def test_syntax_error_and_system_exit_keep_the_session(session: Session) -> None:
    syntax = await session.execute("def broken(:")
    assert syntax.outcome is Outcome.ERROR and syntax.error and syntax.error.name == "SyntaxError"
    exited = await session.execute("import sys\nsys.exit(3)")
    assert exited.outcome is Outcome.ERROR and exited.error and exited.error.name == "SystemExit"
    assert (await session.execute("1 + 1")).result_text == "2"


async def test_top_level_await(session: Session) -> None:
    result = await session.execute("import asyncio\nawait asyncio.sleep(0.01)\n'awaited'")
    assert result.result_text == "'awaited'"


async def test_rich_reprs_become_mime_bundles(session: Session) -> None:
    code = (
        "class Rich:\n"
        "    def _repr_html_(self): return '<b>bold</b>'\n"
        "    def _repr_markdown_(self): return '**bold**'\n"
        "    def __repr__(self): return 'Rich()'\n"
        "Rich()"
    )
    result = await session.execute(code)
    assert result.result is not None
    assert result.result.data == {
        "text/html": "<b>bold</b>",
        "text/markdown": "**bold**",
        "text/plain": "Rich()",
    }


async def test_broken_repr_is_reported_not_fatal(session: Session) -> None:
    # As in IPython: a value whose repr fails is the cell's error, with the repr's traceback.
    result = await session.execute(
        "class Bad:\n    def __repr__(self): raise RuntimeError('no')\nbad = Bad()\nbad"
    )
    assert result.outcome is Outcome.ERROR and result.error is not None
    assert (
        result.error.name == "RuntimeError" and "raise RuntimeError('no')" in result.error.traceback
    )
    assert (await session.execute("type(bad).__name__")).result_text == "'Bad'"


async def test_matplotlib_figures_become_png_in_order(session: Session) -> None:
    code = (
        "import matplotlib.pyplot as plt\n"
        "print('before')\n"
        "plt.plot([1, 2, 3])\n"
        "plt.show()\n"
        "print('after')\n"
        "plt.figure(); plt.bar([1], [2])\n"  # not shown: flushed at the end of the cell
    )
    result = await session.execute(code)
    assert result.outcome is Outcome.COMPLETED, result.error
    kinds = [
        (type(i).__name__, getattr(i, "text", ""))
        for i in result.outputs
        if getattr(i, "name", "stdout") == "stdout"
    ]
    assert kinds[0] == ("StreamOutput", "before\n")
    assert kinds[1][0] == "DisplayOutput"
    assert kinds[2] == ("StreamOutput", "after\n")
    assert kinds[3][0] == "DisplayOutput"
    for item in result.displays:
        assert base64.b64decode(item.data["image/png"]).startswith(b"\x89PNG\r\n\x1a\n")
    assert "non-interactive" not in result.stderr


async def test_display_builtin(session: Session) -> None:
    result = await session.execute("display(1, 'two')\n3")
    assert [d.data["text/plain"] for d in result.displays] == ["1", "'two'"]
    assert result.result_text == "3"


async def test_output_streams_to_callback_before_the_cell_ends(session: Session) -> None:
    seen: list[str] = []

    def on_item(item: object) -> None:
        if isinstance(item, StreamOutput):
            seen.append(item.text)

    code = "import time\nprint('first', flush=True)\ntime.sleep(1)\nprint('second')"
    task = session.execute(code, on_output=on_item)
    import asyncio

    running = asyncio.ensure_future(task)
    await asyncio.sleep(0.6)
    assert "".join(seen) == "first\n"  # arrived while the cell was still sleeping
    result = await running
    assert "".join(seen) == "first\nsecond\n" == result.stdout


async def test_display_items_reach_callback(session: Session) -> None:
    seen: list[object] = []
    await session.execute("display('x')", on_output=seen.append)
    assert any(isinstance(i, DisplayOutput) for i in seen)


async def test_forked_child_does_not_report_twice(session: Session) -> None:
    code = "import os\npid = os.fork()\nif pid == 0:\n    print('child')\nelse:\n    os.waitpid(pid, 0)\n'parent'"
    result = await session.execute(code)
    assert result.result_text == "'parent'"
    assert "child" in result.stdout
    assert (await session.execute("'still fine'")).result_text == "'still fine'"


async def test_prints_and_displays_keep_their_order(session: Session) -> None:
    result = await session.execute("for i in range(30):\n    print(f'p{i}')\n    display(f'd{i}')")
    seen = [
        item.text.strip() if isinstance(item, StreamOutput) else item.data["text/plain"].strip("'")
        for item in result.outputs
    ]
    assert seen == [x for i in range(30) for x in (f"p{i}", f"d{i}")]
