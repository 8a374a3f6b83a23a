"""E2B's own SDK (`e2b-code-interpreter`, unchanged) against a real `lci serve`, configured the
documented way: `E2B_API_URL` and `E2B_SANDBOX_URL` set to the server's base URL, `E2B_API_KEY` to
its key."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2b import (
    AuthenticationException,
    NotFoundException,
    PtySize,
    SandboxException,
    SandboxQuery,
    SandboxState,
    TimeoutException,
)
from e2b.exceptions import SandboxNotFoundException
from e2b_code_interpreter import OutputMessage, Sandbox
from e2b_code_interpreter.charts import BarChart, ChartType, LineChart

from engine.config import Settings
from tests.conftest import require_docker
from tests.server.helpers import FakeModel, LciServer

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def sandbox(e2b_env: LciServer) -> Iterator[Sandbox]:
    sbx = Sandbox.create()
    yield sbx
    sbx.kill()


def test_run_code_keeps_state_across_calls(sandbox: Sandbox) -> None:
    first = sandbox.run_code("import math\nx = 41")
    assert first.error is None and first.results == []
    second = sandbox.run_code("x + 1")
    assert second.text == "42"
    assert second.results[0].is_main_result
    assert sandbox.run_code("math.sqrt(x + 8)").text == "7.0"
    assert sandbox.run_code("'a string'").text == "a string"  # shown without its quotes, as E2B


def test_on_stdout_and_on_stderr_are_called_while_the_code_runs(sandbox: Sandbox) -> None:
    seen: list[tuple[OutputMessage, float]] = []
    errors: list[OutputMessage] = []
    code = (
        "import sys, time\nprint('first', flush=True)\nprint('oops', file=sys.stderr, flush=True)"
        "\ntime.sleep(1.0)\nprint('second')"
    )
    execution = sandbox.run_code(
        code,
        on_stdout=lambda m: seen.append((m, time.monotonic())),
        on_stderr=errors.append,
    )
    finished = time.monotonic()
    assert [m.line for m, _ in seen] == ["first\n", "second\n"]
    assert finished - seen[0][1] > 0.5, "the first line arrived only at the end"
    assert not seen[0][0].error and seen[0][0].timestamp > 0
    assert [m.line for m in errors] == ["oops\n"] and errors[0].error
    assert execution.logs.stdout == ["first\n", "second\n"]
    assert execution.logs.stderr == ["oops\n"]


def test_an_error_has_name_value_and_traceback(sandbox: Sandbox) -> None:
    caught = []
    execution = sandbox.run_code("def f():\n    return 1 / 0\nf()", on_error=caught.append)
    error = execution.error
    assert error is not None and caught == [error]
    assert error.name == "ZeroDivisionError" and error.value == "division by zero"
    assert "return 1 / 0" in error.traceback and "ZeroDivisionError" in error.traceback
    assert execution.results == []
    assert sandbox.run_code("1 + 1").text == "2"  # the sandbox goes on


def test_a_matplotlib_figure_is_a_png_result(sandbox: Sandbox) -> None:
    results = []
    execution = sandbox.run_code(
        "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [3, 1, 2])\nplt.show()\n'done'",
        on_result=results.append,
    )
    assert execution.error is None
    figures = [r for r in execution.results if r.png]
    assert len(figures) == 1 and not figures[0].is_main_result
    assert base64.b64decode(figures[0].png).startswith(PNG_MAGIC)
    assert "png" in figures[0].formats()
    main = [r for r in execution.results if r.is_main_result]
    assert [r.text for r in main] == ["done"]
    assert results == execution.results


def test_a_figure_carries_its_chart_and_a_dataframe_its_data(sandbox: Sandbox) -> None:
    chart_code = (
        "import matplotlib.pyplot as plt\n"
        "plt.bar(['a', 'b'], [3, 5], label='sold')\n"
        "plt.title('Sales')\nplt.ylabel('Units (pcs)')\nplt.show()"
    )
    figure = sandbox.run_code(chart_code).results[0]
    assert figure.png and "chart" in figure.formats()
    chart = figure.chart
    assert isinstance(chart, BarChart) and chart.type == ChartType.BAR
    assert (chart.title, chart.y_label, chart.y_unit) == ("Sales", "Units (pcs)", "pcs")
    assert [(e.label, e.group, e.value) for e in chart.elements] == [
        ("a", "sold", 3),
        ("b", "sold", 5),
    ]
    line = sandbox.run_code("plt.plot([1, 2], [4, 8], label='up')\nplt.show()").results[0]
    assert isinstance(line.chart, LineChart)
    assert line.chart.elements[0].label == "up"
    assert line.chart.elements[0].points == [(1, 4), (2, 8)]
    table = sandbox.run_code("import pandas as pd\npd.DataFrame({'x': [1, 2], 'y': ['p', None]})")
    result = table.results[0]
    assert result.is_main_result and result.data == {"x": [1, 2], "y": ["p", None]}
    assert result.html and "<table" in result.html and "data" in result.formats()


def test_files_written_are_read_back_and_seen_by_code(sandbox: Sandbox) -> None:
    info = sandbox.files.write("/home/user/data/numbers.csv", "a,b\n1,2\n")
    assert info.name == "numbers.csv" and info.path == "/home/user/data/numbers.csv"
    assert sandbox.files.read("/home/user/data/numbers.csv") == "a,b\n1,2\n"
    assert sandbox.files.read("data/numbers.csv", format="bytes") == bytearray(b"a,b\n1,2\n")
    assert sandbox.run_code("open('data/numbers.csv').read().split()[1]").text == "1,2"
    sandbox.run_code("open('made_by_code.txt', 'w').write('from the sandbox')")
    assert sandbox.files.read("/home/user/made_by_code.txt") == "from the sandbox"
    sandbox.files.write_files(
        [{"path": "x.bin", "data": b"\x00\xff"}, {"path": "y.txt", "data": "y"}]
    )
    assert sandbox.files.read("x.bin", format="bytes") == bytearray(b"\x00\xff")
    names = {e.name: e.type.value for e in sandbox.files.list("/home/user") if e.type}
    assert names == {"data": "dir", "made_by_code.txt": "file", "x.bin": "file", "y.txt": "file"}
    assert [e.name for e in sandbox.files.list("/home/user/data")] == ["numbers.csv"]
    assert sandbox.files.exists("y.txt") and not sandbox.files.exists("nope.txt")
    with pytest.raises(NotFoundException):
        sandbox.files.read("nope.txt")
    with pytest.raises(SandboxException, match="outside the sandbox's working directory"):
        sandbox.files.read("/etc/passwd")


def test_kill_ends_the_sandbox(e2b_env: LciServer) -> None:
    sandbox = Sandbox.create()
    sandbox.run_code("x = 1")
    assert sandbox.is_running()
    assert sandbox.kill() is True
    assert not sandbox.is_running()
    with pytest.raises(SandboxException, match="was not found"):
        sandbox.run_code("x")
    assert Sandbox.kill(sandbox.sandbox_id) is False  # already gone
    with pytest.raises(SandboxNotFoundException):
        Sandbox.connect(sandbox.sandbox_id)
    with pytest.raises(SandboxNotFoundException):
        sandbox.get_info()


def test_connect_list_metadata_and_envs(e2b_env: LciServer) -> None:
    sandbox = Sandbox.create(metadata={"owner": "e2b-test"}, envs={"GREETING": "hello"})
    try:
        sandbox.run_code("kept = 'state'")
        again = Sandbox.connect(sandbox.sandbox_id)
        assert again.run_code("kept").text == "state"
        assert again.run_code("import os\nos.environ['GREETING']").text == "hello"
        once = sandbox.run_code("os.environ.get('ONCE')", envs={"ONCE": "yes"})
        assert once.text == "yes"
        assert sandbox.run_code("os.environ.get('ONCE')").results == []  # None: no result
        listed = Sandbox.list(query=SandboxQuery(metadata={"owner": "e2b-test"})).next_items()
        assert [s.sandbox_id for s in listed] == [sandbox.sandbox_id]
        assert listed[0].metadata == {"owner": "e2b-test"}
        assert Sandbox.list(query=SandboxQuery(metadata={"owner": "else"})).next_items() == []
        paused = SandboxQuery(metadata={"owner": "e2b-test"}, state=[SandboxState.PAUSED])
        assert Sandbox.list(query=paused).next_items() == []  # lci has no paused sandboxes
        info = sandbox.get_info()
        assert info.template_id == "code-interpreter-v1" and info.state.value == "running"
    finally:
        sandbox.kill()


def test_set_timeout_ends_the_sandbox_when_it_passes(e2b_env: LciServer) -> None:
    sandbox = Sandbox.create(timeout=60)
    sandbox.set_timeout(1)
    deadline = time.monotonic() + 10
    while sandbox.is_running() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not sandbox.is_running()
    assert Sandbox.kill(sandbox.sandbox_id) is False


def test_contexts_are_separate_interpreters(sandbox: Sandbox) -> None:
    sandbox.run_code("where = 'default'")
    context = sandbox.create_code_context()
    assert context.language == "python"
    assert {c.id for c in sandbox.list_code_contexts()} >= {context.id}
    assert sandbox.run_code("'where' in globals()", context=context).text == "False"
    sandbox.run_code("where = 'other'", context=context)
    assert sandbox.run_code("where", context=context).text == "other"
    assert sandbox.run_code("where").text == "default"
    sandbox.restart_code_context(context)
    assert sandbox.run_code("'where' in globals()", context=context).text == "False"
    sandbox.remove_code_context(context)
    assert context.id not in {c.id for c in sandbox.list_code_contexts()}
    with pytest.raises(NotFoundException):
        sandbox.run_code("1", context=context)
    with pytest.raises(SandboxException, match="Python and bash only"):
        sandbox.run_code("1", language="r")


def test_code_starts_in_home_user_and_counts_from_one(sandbox: Sandbox) -> None:
    """As in E2B's sandboxes: /home/user is the working directory (lci's workdir, mounted there),
    in every context and after a restart; the move there is not one of the client's executions."""
    first = sandbox.run_code("import os\nos.getcwd()")
    assert first.text == "/home/user" and first.execution_count == 1
    assert sandbox.run_code("1").execution_count == 2
    sandbox.files.write("/home/user/data.txt", "abc")
    assert sandbox.files.read("data.txt") == "abc"  # the same directory, however it is spelled
    context = sandbox.create_code_context()
    assert context.cwd == "/home/user"
    assert sandbox.run_code("import os\nos.getcwd()", context=context).text == "/home/user"
    sandbox.restart_code_context(context)
    after = sandbox.run_code("import os\nos.getcwd()", context=context)
    assert after.text == "/home/user", after


def test_restarting_the_default_context_keeps_its_files(sandbox: Sandbox) -> None:
    sandbox.run_code("kept = 1\nopen('still_here.txt', 'w').write('yes')")
    default = sandbox.list_code_contexts()[0]
    sandbox.restart_code_context(default)
    assert sandbox.run_code("'kept' in globals()").text == "False"
    assert sandbox.run_code("open('still_here.txt').read()").text == "yes"
    with pytest.raises(SandboxException, match="default context cannot be removed"):
        sandbox.remove_code_context(default)


def test_the_api_key_is_checked(e2b_env: LciServer) -> None:
    with pytest.raises(AuthenticationException):
        Sandbox.create(api_key="wrong")


def test_ipython_shell_escapes_run_in_the_sandbox(sandbox: Sandbox) -> None:
    """E2B runs an IPython kernel: `!cmd` and `%pip` lines work there, so they work here too."""
    execution = sandbox.run_code("!echo from-the-shell\nafter = 1")
    assert execution.error is None and execution.logs.stdout == ["from-the-shell\n"]
    assert sandbox.run_code("_exit_code, after").text == "(0, 1)"
    pip = sandbox.run_code("%pip --version")
    assert pip.error is None and "pip" in "".join(pip.logs.stdout)


@pytest.mark.docker
def test_e2b_sandboxes_on_the_docker_backend(
    shared_fake: FakeModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_docker(Settings())
    with LciServer(
        shared_fake.base_url, api_key="dk", args=["--backend", "docker"], env={}
    ) as docker_server:
        monkeypatch.setenv("E2B_API_URL", docker_server.url)
        monkeypatch.setenv("E2B_SANDBOX_URL", docker_server.url)
        monkeypatch.setenv("E2B_API_KEY", "dk")
        monkeypatch.delenv("E2B_DEBUG", raising=False)
        sandbox = Sandbox.create()
        sandbox.run_code("import os\nx = 6 * 7")
        assert sandbox.run_code("x, os.getcwd()").text == "(42, '/home/user')"
        sandbox.files.write("/home/user/in.txt", "from the host")
        assert sandbox.run_code("open('in.txt').read()").text == "from the host"
        figure = sandbox.run_code("import matplotlib.pyplot as plt\nplt.plot([1])\nplt.show()")
        assert base64.b64decode(figure.results[0].png or "").startswith(PNG_MAGIC)
        chart = figure.results[0].chart
        assert isinstance(chart, LineChart) and chart.elements[0].points == [(0, 1)]
        table = sandbox.run_code("import pandas as pd\npd.DataFrame({'x': [1.5]})")
        assert table.results[0].data == {"x": [1.5]}
        # commands, a terminal, bash cells and the filesystem service, in the same container
        shell = sandbox.commands.run("cat in.txt; mkdir -p made; echo $PWD")
        assert shell.stdout == "from the host/home/user\n" and shell.exit_code == 0
        assert [e.name for e in sandbox.files.list("made")] == []
        sandbox.files.rename("in.txt", "made/moved.txt")
        assert sandbox.run_code("ls made", language="bash").logs.stdout == ["moved.txt\n"]
        seen: list[bytes] = []
        terminal = sandbox.pty.create(PtySize(rows=20, cols=70))
        sandbox.pty.send_stdin(terminal.pid, b"stty size; exit\n")
        terminal.wait(on_pty=seen.append)
        assert b"20 70" in b"".join(seen)
        assert sandbox.kill() and not sandbox.is_running()
        docker_server.stop()
        assert "Traceback" not in docker_server.logs()


def test_executions_cut_short_by_kill_report_the_sandbox_killed(e2b_env: LciServer) -> None:
    """A running cell and one queued behind it, then the sandbox is killed: as when an E2B sandbox
    dies, both streams break, and the SDK, finding the sandbox gone, says it was killed (not an
    execution error claiming a crashed interpreter)."""
    sandbox = Sandbox.create()
    done: dict[str, Any] = {}

    def run(name: str, code: str) -> None:
        try:
            done[name] = sandbox.run_code(code)
        except Exception as exc:
            done[name] = exc

    running = threading.Thread(target=run, args=("running", "import time\ntime.sleep(5)"))
    running.start()
    time.sleep(1.0)
    queued = threading.Thread(target=run, args=("queued", "'never runs'"))
    queued.start()
    time.sleep(0.5)
    assert Sandbox.kill(sandbox.sandbox_id)
    running.join(30)
    queued.join(30)
    for name in ("running", "queued"):
        assert isinstance(done[name], TimeoutException), (name, done[name])
        assert "The sandbox was killed while the request was in progress" in str(done[name])


def test_a_sandbox_belongs_to_the_key_that_created_it(
    shared_fake: FakeModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With several keys, another key's SDK sees none of a sandbox: not in a list, not by id."""
    alice, bob = "alice-e2b-key-0123456789", "bob-e2b-key-9876543210"
    keys = tmp_path / "keys"
    keys.write_text(f"alice {alice}\nbob {bob}\n")
    keys.chmod(0o600)
    with LciServer(shared_fake.base_url, args=["--api-key-file", str(keys)]) as tenants:
        monkeypatch.setenv("E2B_API_URL", tenants.url)
        monkeypatch.setenv("E2B_SANDBOX_URL", tenants.url)
        monkeypatch.delenv("E2B_DEBUG", raising=False)
        sandbox = Sandbox.create(api_key=alice)
        assert sandbox.run_code("6 * 7").text == "42"
        assert [s.sandbox_id for s in Sandbox.list(api_key=alice).next_items()] == [
            sandbox.sandbox_id
        ]
        assert Sandbox.list(api_key=bob).next_items() == []
        with pytest.raises(SandboxNotFoundException):
            Sandbox.connect(sandbox.sandbox_id, api_key=bob)
        assert Sandbox.kill(sandbox.sandbox_id, api_key=bob) is False
        assert sandbox.is_running()
        assert Sandbox.kill(sandbox.sandbox_id, api_key=alice) is True
        tenants.stop()
        assert "Traceback" not in tenants.logs()
