"""What the model sees is true, complete and bounded, whatever the cell does to the interpreter:
output before a crash, giant values and errors, failing reprs, importable workdir modules, broken
plumbing, output of threads and children that outlive their cell, and a forged frame channel. Each
test runs the real cell against both backends."""

from __future__ import annotations

import os

import pytest

from engine.core.session import Session
from engine.models import BackendName, Outcome
from tests.conftest import IN_CI, on_gvisor

# Finds the agent's frame channel from inside the sandbox, as hostile code would.
FIND_CHANNEL = (
    "import gc, os, struct\n"
    "channel = next(o for o in gc.get_objects() if type(o).__name__ == 'Channel' "
    "and getattr(o, 'out_fd', -1) > 2)\n"
    "def forge(body):\n"
    "    os.write(channel.out_fd, struct.pack('>I', len(body)) + body)\n"
)


async def recovers(session: Session) -> None:
    result = await session.execute("6 * 7")
    assert result.result_text == "42", result


@pytest.mark.parametrize(
    "ending",
    [
        "import ctypes\nctypes.string_at(0)",
        "import os\nos._exit(3)",
        "import os, signal\nos.kill(os.getpid(), signal.SIGSTOP)",
    ],
    ids=["segfault", "os_exit", "sigstop"],
)
async def test_output_printed_before_a_crash_is_kept(session: Session, ending: str) -> None:
    await session.execute("state = 1")
    code = f"print('about to crash', flush=True)\nprint('on stderr', file=__import__('sys').stderr, flush=True)\n{ending}"
    result = await session.execute(code, timeout_s=2)
    assert result.outcome in (Outcome.CRASHED, Outcome.KILLED), result
    assert result.stdout == "about to crash\n", result
    assert result.stderr == "on stderr\n", result
    assert not result.state_preserved
    assert result.error is not None and "state lost" in result.error.value
    await recovers(session)


async def test_a_giant_value_is_cut_inside_the_sandbox(make_session) -> None:  # type: ignore[no-untyped-def]
    session = await make_session(memory_mb=768)
    budget = session.limits.output_bytes
    result = await session.execute("'a' * (24 << 20) + 'THE END'")
    assert result.outcome is Outcome.COMPLETED, result.error
    text = result.result_text or ""
    assert text.startswith("'aaa") and text.endswith("THE END'")
    assert len(text.encode()) <= budget and "bytes of output omitted" in text
    assert result.truncated
    assert len(result.model_dump_json()) < 3 * budget


async def test_a_giant_exception_message_is_that_exception_cut(make_session) -> None:  # type: ignore[no-untyped-def]
    session = await make_session(memory_mb=768)
    budget = session.limits.output_bytes
    result = await session.execute("raise ValueError('b' * (24 << 20) + 'TAIL')")
    assert result.outcome is Outcome.ERROR, result
    assert result.error is not None and result.error.name == "ValueError"
    assert result.error.value.endswith("TAIL") and len(result.error.value) <= budget
    assert len(result.error.traceback) <= budget and "TAIL" in result.error.traceback
    assert result.truncated
    await recovers(session)


async def test_a_long_exception_chain_gives_a_bounded_traceback(session: Session) -> None:
    code = (
        "def fail(n):\n"
        "    try:\n"
        "        raise ValueError(f'level {n} ' + 'z' * 300)\n"
        "    except ValueError:\n"
        "        if n:\n"
        "            fail(n - 1)\n"
        "        raise\n"
        "fail(300)"
    )
    result = await session.execute(code)
    assert result.outcome is Outcome.ERROR and result.error is not None
    assert len(result.error.traceback.encode()) <= session.limits.output_bytes
    assert "Traceback (most recent call last)" in result.error.traceback
    assert "level 0" in result.error.traceback
    assert result.truncated


async def test_a_failing_display_is_an_error(session: Session) -> None:
    result = await session.execute("10**5000")
    assert result.outcome is Outcome.ERROR, result
    assert result.error is not None and result.error.name == "ValueError"
    assert "4300" in result.error.value
    broken = await session.execute(
        "class Bad:\n    def __repr__(self):\n        raise RuntimeError('no repr')\nBad()"
    )
    assert broken.outcome is Outcome.ERROR and broken.error is not None
    assert "raise RuntimeError('no repr')" in broken.error.traceback
    assert "lci_agent" not in broken.error.traceback and "display.py" not in broken.error.traceback


async def test_the_working_directory_is_importable_and_reloads(session: Session) -> None:
    await session.execute("open('mymod.py', 'w').write('VALUE = 1\\n')")
    assert (await session.execute("import mymod\nmymod.VALUE")).result_text == "1"
    await session.execute("open('mymod.py', 'w').write('VALUE = 22  # changed\\n')")
    reloaded = await session.execute("import importlib\nimportlib.reload(mymod).VALUE")
    assert reloaded.result_text == "22", reloaded
    await session.execute("open('newmod.py', 'w').write('NEW = 3\\n')")
    assert (await session.execute("import newmod\nnewmod.NEW")).result_text == "3"
    # A package, then a module added to it once it was imported.
    await session.execute("import os\nos.mkdir('pkg')\nopen('pkg/__init__.py', 'w').close()")
    assert (await session.execute("import pkg\npkg.__name__")).result_text == "'pkg'"
    await session.execute("open('pkg/late.py', 'w').write('LATE = 4\\n')")
    assert (await session.execute("import pkg.late\npkg.late.LATE")).result_text == "4"


async def test_closed_and_removed_streams_are_restored(session: Session) -> None:
    await session.execute("import sys\nsys.stdout.close()\nsys.stderr = None")
    after = await session.execute(
        "import sys\nprint('printing again')\nprint('err', file=sys.stderr)"
    )
    assert after.stdout == "printing again\n" and after.stderr == "err\n", after


async def test_a_broken_import_system_restarts_the_interpreter(session: Session) -> None:
    await session.execute("kept = 1")
    result = await session.execute(
        "import sys, builtins\nsys.modules.clear()\nsys.meta_path.clear()\ndel builtins.__import__"
    )
    assert result.outcome is Outcome.CRASHED and not result.state_preserved, result
    assert result.error is not None and "restarted" in result.error.value
    assert (await session.execute("1 + 1")).result_text == "2"
    assert (await session.execute("'kept' in globals()")).result_text == "False"


async def test_a_thread_left_printing_does_not_leak_into_later_cells(session: Session) -> None:
    code = (
        "import threading, time\n"
        "def chatter():\n"
        "    while True:\n"
        "        print('background', flush=True)\n"
        "        time.sleep(0.02)\n"
        "threading.Thread(target=chatter).start()\n"
        "while True:\n"
        "    time.sleep(0.05)"
    )
    first = await session.execute(code, timeout_s=1)
    assert first.outcome is Outcome.INTERRUPTED and "background" in first.stdout
    later = await session.execute("import time\ntime.sleep(0.5)\nprint('mine')")
    assert later.stdout == "mine\n", later


async def test_a_forked_child_does_not_leak_into_later_cells(session: Session) -> None:
    code = (
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    print('child while its cell runs', flush=True)\n"
        "    time.sleep(0.3)\n"
        "    for _ in range(30):\n"
        "        print('child later', flush=True)\n"
        "        time.sleep(0.03)\n"
        "    os._exit(0)\n"
        "time.sleep(0.1)"
    )
    first = await session.execute(code)
    assert first.stdout == "child while its cell runs\n", first
    later = await session.execute("import time\ntime.sleep(1.2)\nprint('mine')")
    assert later.stdout == "mine\n", later


async def test_a_forked_child_cannot_speak_the_protocol(session: Session) -> None:
    code = (
        "import os\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    for fd in range(3, 1024):\n"
        "        try:\n"
        '            os.write(fd, b\'\\x00\\x00\\x00\\x10{"type":"done"}\')\n'
        "        except OSError:\n"
        "            pass\n"
        "    os._exit(0)\n"
        "os.waitpid(pid, 0)\n"
        "'parent'"
    )
    result = await session.execute(code)
    assert result.outcome is Outcome.COMPLETED and result.result_text == "'parent'", result
    await recovers(session)


FORGED_SLOW = (
    "under gVisor: a large forged frame is not reported within the cell's time; the timeout "
    "kills the cell instead (contained, its result bounded); not diagnosed yet"
)


@pytest.mark.parametrize(
    "body",
    [
        "b'[' + b'{},' * (300 << 10) + b'{}]'",  # cheap to send, millions of objects to parse
        "b'{\"type\": \"x\", \"a\": ' + b'[' * 100000 + b']' * 100000 + b'}'",  # recursion
        'b\'{"type": "done", "id": "x"}\' + b\' \' * (80 << 20)',  # over the frame limit
    ],
    ids=["many_objects", "deep_nesting", "oversized"],
)
async def test_a_hostile_frame_is_a_reported_protocol_violation(
    session: Session, body: str
) -> None:
    await session.execute("kept = 1")
    result = await session.execute(FIND_CHANNEL + f"forge({body})\nimport time\ntime.sleep(2)")
    if on_gvisor(session) and result.outcome is Outcome.KILLED:
        pytest.xfail(FORGED_SLOW)
    assert result.outcome is Outcome.CRASHED, result
    assert result.error is not None and "protocol" in result.error.value
    await recovers(session)


async def test_a_forged_done_frame_cannot_bring_back_a_giant_result(session: Session) -> None:
    code = FIND_CHANNEL + (
        "import json\n"
        "kernel = next(o for o in gc.get_objects() if type(o).__name__ == 'Kernel')\n"
        "forge(json.dumps({'type': 'done', 'id': kernel.exec_id, 'status': 'error',\n"
        "    'result': {'text/plain': 'r' * (400 << 10), 'text/html': 'h' * (100 << 10)},\n"
        "    'error': {'name': 'E' * 5000, 'value': 'v' * (200 << 10),\n"
        "              'traceback': 't' * (200 << 10)}}).encode())\n"
        "import time\ntime.sleep(1)"
    )
    result = await session.execute(code)
    budget = session.limits.output_bytes
    assert len(result.model_dump_json()) < 8 * budget, len(result.model_dump_json())
    if on_gvisor(session) and result.outcome is Outcome.KILLED:
        pytest.xfail(FORGED_SLOW)
    assert result.truncated


CJK_FIGURE = (
    "import matplotlib.pyplot as plt\n"
    "fig, ax = plt.subplots()\n"
    "ax.set_title('売上の推移 销售趋势')\n"
    "ax.plot([1, 2, 3])\n"
    "plt.show()"
)


def _host_has_cjk_font() -> bool:
    for directory in ("/usr/share/fonts", "/usr/local/share/fonts"):
        for _, _, files in os.walk(directory):
            if any(
                hint in f.lower() for f in files for hint in ("wqy", "cjk", "droidsansfallback")
            ):
                return True
    return False


async def test_cjk_text_in_figures_renders_with_an_installed_font(
    session: Session, backend: BackendName
) -> None:
    if backend is BackendName.SUBPROCESS and not _host_has_cjk_font():
        if IN_CI:
            pytest.fail("CI installs a CJK font (.ci/run)")
        pytest.skip("no CJK font on this host (apt-get install fonts-wqy-microhei)")
    result = await session.execute(CJK_FIGURE, timeout_s=20)
    assert result.outcome is Outcome.COMPLETED, result
    assert len(result.displays) == 1 and "image/png" in result.displays[0].data
    assert "missing from" not in result.stderr and "no glyph" not in result.stderr, result.stderr


async def test_missing_glyphs_are_reported_once_per_session(session: Session) -> None:
    only_latin = "import matplotlib\nmatplotlib.rcParams['font.family'] = ['DejaVu Sans']\n"
    first = await session.execute(only_latin + CJK_FIGURE, timeout_s=20)
    assert first.stderr.count("no glyph") == 1 and "Glyph" not in first.stderr, first.stderr
    second = await session.execute(CJK_FIGURE, timeout_s=20)
    assert second.stderr == "", second.stderr
    assert len(second.displays) == 1


async def test_an_interrupt_traceback_shows_only_user_frames(session: Session) -> None:
    result = await session.execute("import time\nwhile True:\n    time.sleep(0.01)", timeout_s=1)
    assert result.outcome is Outcome.INTERRUPTED and result.error is not None, result
    trace = result.error.traceback
    assert "KeyboardInterrupt" in trace and "time.sleep(0.01)" in trace, trace
    assert "_on_sigint" not in trace and "kernel.py" not in trace, trace
