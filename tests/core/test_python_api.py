"""The embedding API as a program uses it: interrupt and restart, per-kind callbacks, images as
bytes, execution counts, the exported errors and the typed sync wrappers (Ctrl-C included)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import typing
from pathlib import Path

import pytest

import engine
from engine import Outcome, blocking
from engine.api import BlockingManager, BlockingSession
from engine.config import Settings
from engine.core.manager import SessionManager
from engine.core.session import Session
from engine.models import DisplayOutput, ErrorInfo, Execution, OutputItem, ResultOutput
from tests.cli.helpers import REPO, lci_env
from tests.conftest import SessionFactory

PLOT = "import matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.show()\n"


async def started(session: Session, code: str) -> asyncio.Task[Execution]:
    """Run `code` (which prints 'started' first) in a task; return once it printed that."""
    ready = asyncio.Event()
    task = asyncio.create_task(
        session.execute(code, on_stdout=lambda text: ready.set() if "started" in text else None)
    )
    await asyncio.wait_for(ready.wait(), 30)
    return task


async def test_interrupt_keeps_state(session: Session) -> None:
    assert await session.interrupt() is False  # nothing runs
    task = await started(
        session, "import time\nx = 5\nprint('started', flush=True)\ntime.sleep(60)"
    )
    assert await session.interrupt() is True
    execution = await asyncio.wait_for(task, 30)
    assert execution.outcome is Outcome.INTERRUPTED and execution.state_preserved
    assert execution.error is not None and execution.error.name == "KeyboardInterrupt"
    assert execution.duration_ms < 30_000
    assert (await session.execute("x")).result_text == "5"


async def test_interrupt_of_a_cell_that_ignores_it_restarts(session: Session) -> None:
    code = (
        "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nx = 1\n"
        "print('started', flush=True)\ntime.sleep(60)"
    )
    task = await started(session, code)
    assert await session.interrupt() is True
    execution = await asyncio.wait_for(task, 30)
    assert execution.outcome is Outcome.KILLED and not execution.state_preserved
    assert (await session.execute("'x' in globals()")).result_text == "False"


async def test_restart(session: Session) -> None:
    await session.execute("x = 1\nopen('kept.txt', 'w').write('yes')")
    await session.restart()
    after = await session.execute("'x' in globals(), open('kept.txt').read()")
    assert after.result_text == "(False, 'yes')"
    task = await started(
        session, "y = 2\nprint('started', flush=True)\nimport time\ntime.sleep(60)"
    )
    await session.restart()
    killed = await asyncio.wait_for(task, 30)
    assert killed.outcome is Outcome.KILLED and killed.error is not None
    assert (await session.execute("'y' in globals()")).result_text == "False"
    assert not session.busy


async def test_per_kind_callbacks(make_session: SessionFactory) -> None:
    session = await make_session(timeout_s=60)  # importing matplotlib on a busy machine
    seen: dict[str, list[object]] = {
        k: [] for k in ("out", "err", "display", "result", "error", "all")
    }
    callbacks: dict[str, typing.Any] = {
        "on_stdout": seen["out"].append,
        "on_stderr": seen["err"].append,
        "on_display": seen["display"].append,
        "on_result": seen["result"].append,
        "on_error": seen["error"].append,
        "on_output": seen["all"].append,
    }
    code = "import sys\nprint('o')\nprint('e', file=sys.stderr)\n" + PLOT + "6 * 7"
    execution = await session.execute(code, **callbacks)
    assert "".join(seen["out"]) == "o\n" and "".join(seen["err"]) == "e\n"  # type: ignore[arg-type]
    assert [type(d) for d in seen["display"]] == [DisplayOutput]
    assert [r.data["text/plain"] for r in seen["result"]] == ["42"]  # type: ignore[attr-defined]
    assert seen["error"] == [] and len(seen["all"]) == len(seen["out"]) + len(seen["err"]) + 2
    failed = await session.execute("1 / 0", **callbacks)
    assert seen["error"] == [failed.error] and isinstance(seen["error"][0], ErrorInfo)
    assert execution.execution_count == 1 and failed.execution_count == 2
    assert session.executions == 2


async def test_images_as_bytes_and_files(make_session: SessionFactory, tmp_path: Path) -> None:
    session = await make_session(timeout_s=60)
    execution = await session.execute(PLOT + PLOT)
    assert len(execution.images) == 2
    assert all(image.startswith(b"\x89PNG") for image in execution.images)
    paths = execution.save_images(tmp_path / "figs", stem="plot")
    assert [p.name for p in paths] == ["plot-1.png", "plot-2.png"]
    assert paths[0].read_bytes() == execution.images[0]
    saved = execution.displays[0].save(tmp_path / "one")
    assert saved == tmp_path / "one.png" and saved.read_bytes() == execution.images[0]
    text = await session.execute("'no image'")
    assert text.images == []
    assert text.result is not None
    with pytest.raises(ValueError, match="no image"):
        text.result.save(tmp_path / "nothing")


def test_errors_and_models_are_exported() -> None:
    from engine import errors

    for name in (
        "SessionBusy",
        "SessionClosed",
        "SessionNotFound",
        "SandboxStartError",
        "LCIError",
    ):
        assert getattr(engine, name) is getattr(errors, name)
    assert engine.ResultOutput is ResultOutput
    assert sorted(engine.__all__) == sorted(engine._LOCATIONS)
    for name in engine.__all__:
        assert getattr(engine, name) is not None


def test_sync_wrappers_are_typed(settings: Settings) -> None:
    hints = typing.get_type_hints(BlockingSession.execute)
    assert hints["return"] is Execution
    assert typing.get_type_hints(BlockingManager.create)["return"] is BlockingSession
    with blocking(SessionManager(settings)) as manager:
        session = manager.create()
        items: list[OutputItem] = []
        assert session.execute("print(1)\n6 * 7", on_output=items.append).result_text == "42"
        assert session.execution_count == 1 and isinstance(items[-1], ResultOutput)
        assert "".join(getattr(item, "text", "") for item in items) == "1\n"  # chunks may split
        session.restart()
        assert session.execute("2").result_text == "2"


def test_sync_tree(settings: Settings) -> None:
    with blocking(SessionManager(settings)) as manager:
        tree = manager.create().tree
        assert tree.make_dir("a/b") is True and tree.make_dir("a/b") is False
        assert tree.stat("a/b").type == "dir"
        assert tree.move("a/b", "c").path == "c"
        assert [entry.path for entry in tree.list(depth=2)] == ["a", "c"]
        tree.remove("a")
        assert [entry.path for entry in tree.list()] == ["c"]
        with pytest.raises(engine.FileAccessError):
            tree.stat("../outside")


CTRL_C = """
import sys
from engine import SessionManager, Settings, blocking

with blocking(SessionManager(Settings(forkserver=False, subprocess_warm_pool=0))) as manager:
    session = manager.create()
    session.execute("x = 7")
    try:
        session.execute("print('started', flush=True)\\nimport time\\ntime.sleep(60)",
                        on_stdout=lambda text: print(text, end="", flush=True))
    except KeyboardInterrupt:
        print("KeyboardInterrupt raised", flush=True)
    print("busy", session.busy, flush=True)
    print("x =", session.execute("x").result_text, flush=True)
"""


def test_ctrl_c_in_sync_code_interrupts_the_cell(tmp_path: Path) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", CTRL_C],
        env=lci_env(tmp_path / "state"),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stdout is not None
        assert process.stdout.readline() == "started\n"
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert out.splitlines() == ["KeyboardInterrupt raised", "busy False", "x = 7"]
