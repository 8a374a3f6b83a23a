"""Bash cells through E2B's SDK (`run_code(language="bash")`, bash contexts) against `lci serve`:
run in the sandbox, streamed, state kept per context, exit status as the error."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from e2b import TimeoutException
from e2b_code_interpreter import Sandbox

from tests.server.conftest import API_KEY
from tests.server.helpers import LciServer


@pytest.fixture
def sandbox(server: LciServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    for name, value in [
        ("E2B_API_URL", server.url),
        ("E2B_SANDBOX_URL", server.url),
        ("E2B_API_KEY", API_KEY),
    ]:
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("E2B_DEBUG", raising=False)
    sbx = Sandbox.create(envs={"SANDBOX_WIDE": "yes"})
    yield sbx
    sbx.kill()


def bash(sandbox: Sandbox, code: str, **kwargs: object) -> str:
    execution = sandbox.run_code(code, language="bash", **kwargs)  # type: ignore[arg-type]
    assert execution.error is None, execution.error
    return "".join(execution.logs.stdout)


def test_state_carries_over_between_bash_cells(sandbox: Sandbox) -> None:
    assert bash(sandbox, "pwd; echo $SANDBOX_WIDE") == "/home/user\nyes\n"
    bash(sandbox, "mkdir -p sub && cd sub; plain=1; export EXPORTED=2; greet() { echo hi $1; }")
    shown = bash(
        sandbox,
        "pwd; echo $plain $EXPORTED; greet you; python3 -c \"import os; print(os.environ.get('EXPORTED'))\"",
    )
    assert shown == "/home/user/sub\n1 2\nhi you\n2\n"
    bash(sandbox, "unset EXPORTED; cd ..")
    assert bash(sandbox, "pwd; echo ${EXPORTED:-gone}") == "/home/user\ngone\n"
    # the Python context is another interpreter: it keeps its own directory and variables
    assert sandbox.run_code("import os; os.getcwd()").text == "/home/user"
    # the files the bash cells write are the sandbox's files
    bash(sandbox, "echo from-bash > made.txt")
    assert sandbox.files.read("/home/user/made.txt") == "from-bash\n"


def test_exit_status_is_the_error_and_output_streams_apart(sandbox: Sandbox) -> None:
    seen: list[tuple[str, float]] = []
    start = time.monotonic()
    execution = sandbox.run_code(
        "echo out; echo err >&2; sleep 1; echo late; exit 3",
        language="bash",
        on_stdout=lambda m: seen.append((m.line, time.monotonic() - start)),
    )
    assert execution.logs.stdout == ["out\n", "late\n"] and execution.logs.stderr == ["err\n"]
    assert execution.error is not None
    assert (execution.error.name, execution.error.value) == ("", "3")  # as E2B's bash kernel
    assert seen[0][0] == "out\n" and seen[1][1] - seen[0][1] > 0.5  # streamed, not at the end
    failed = sandbox.run_code("false", language="bash")
    assert failed.error is not None and failed.error.value == "1"


def test_envs_of_one_cell_are_restored_after_it(sandbox: Sandbox) -> None:
    assert bash(sandbox, "echo $ONCE $SANDBOX_WIDE", envs={"ONCE": "a", "SANDBOX_WIDE": "b"}) == (
        "a b\n"
    )
    assert bash(sandbox, "echo ${ONCE:-unset} $SANDBOX_WIDE") == "unset yes\n"


def test_bash_contexts_are_separate_and_restart_fresh(sandbox: Sandbox) -> None:
    first = sandbox.create_code_context(language="bash", cwd="/tmp")
    second = sandbox.create_code_context(language="bash")
    assert (first.language, first.cwd) == ("bash", "/tmp")
    sandbox.run_code("kept=first", context=first)
    counted = sandbox.run_code("echo ${kept:-none}; pwd", context=first)
    assert "".join(counted.logs.stdout) == "first\n/tmp\n" and counted.execution_count == 2
    assert sandbox.run_code("echo ${kept:-none}", context=second).logs.stdout == ["none\n"]
    sandbox.restart_code_context(first)
    assert sandbox.run_code("echo ${kept:-none}", context=first).logs.stdout == ["none\n"]
    languages = {c.id: c.language for c in sandbox.list_code_contexts()}
    assert languages[first.id] == languages[second.id] == "bash"
    sandbox.remove_code_context(second)
    assert sandbox.run_code("1 + 1").text == "2"  # the shared session lives on


def test_an_interrupted_bash_cell_stops_its_commands(sandbox: Sandbox) -> None:
    with pytest.raises(TimeoutException):
        sandbox.run_code("sleep 61.2345 & sleep 61.2345", language="bash", timeout=2)
    time.sleep(1.5)  # the interrupt reaches the cell once the client has gone
    assert bash(sandbox, "echo again") == "again\n"
    running = "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done 2>/dev/null"
    assert bash(sandbox, running + " | grep -c '^sleep 61.2345' || true") == "0\n"
