"""`lci exec` as a real subprocess: live output, limits, timeouts in words, files in and out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.helpers import SPACED_PRINTS, assert_live, lci, timed_lines


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


def test_output_is_live(state: Path) -> None:
    assert_live(list(timed_lines("exec", SPACED_PRINTS, state_dir=state)))


def test_quick_start_cell_has_the_data_stack(state: Path, tmp_path: Path) -> None:
    plot = "import pandas as pd, matplotlib.pyplot as plt\npd.Series([1, 3, 2]).plot()\nplt.show()"
    done = lci("exec", "--out-dir", str(tmp_path / "img"), plot, "pd.__name__", state_dir=state)
    assert done.returncode == 0, done.stderr
    (image,) = (tmp_path / "img").glob("lci-*-cell1-1.png")
    assert image.read_bytes().startswith(b"\x89PNG")
    assert f"[image saved to {image}]" in done.stdout and "'pandas'" in done.stdout


def test_timeout_is_reported_as_a_timeout(state: Path) -> None:
    done = lci("exec", "--timeout", "1", "x = 1", "while True: pass", "x", state_dir=state)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last == "lci: timed out after 1 s (interrupted; the session keeps its state)", (
        done.stderr
    )
    assert "\nKeyboardInterrupt" not in done.stderr  # the exception line is replaced by the reason
    assert done.stdout.strip().endswith("1")  # the next cell ran in the same session


def test_cpu_time_limit_is_reported_as_such(state: Path) -> None:
    done = lci("exec", "--cpu-s", "1", "--timeout", "20", "while True: pass", state_dir=state)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last == (
        "lci: used up its CPU time limit of 1 s (interrupted; the session keeps its state)"
    ), done.stderr


def test_every_limit_has_an_option(state: Path) -> None:
    code = (
        "import resource\nprint('x' * 5000)\n"
        "resource.getrlimit(resource.RLIMIT_NOFILE)[0], resource.getrlimit(resource.RLIMIT_CPU)[0]"
    )
    done = lci(
        "exec", "--json", "--max-procs", "8", "--disk-mb", "8", "--output-bytes", "2048",
        "--cpus", "0.5", "--cpu-s", "7", "--open-files", "64", "--memory-mb", "200",
        "--timeout", "9", code, state_dir=state,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    execution = json.loads(done.stdout)
    assert execution["limits"] == {
        "timeout_s": 9.0, "cpu_s": 7.0, "memory_mb": 200, "max_procs": 8, "disk_mb": 8,
        "open_files": 64, "output_bytes": 2048, "network": False, "cpus": 0.5,
    }  # fmt: skip
    assert execution["truncated"] is True
    nofile, cpu = execution["outputs"][-1]["data"]["text/plain"].strip("()").split(", ")
    assert int(nofile) == 64 and 7 <= int(cpu) <= 8


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("--timeout", "-1", "--timeout must be greater than 0 (got -1.0)"),
        ("--memory-mb", "1", "--memory-mb must be greater than or equal to 16 (got 1)"),
        ("--open-files", "3", "--open-files must be greater than or equal to 32 (got 3)"),
        ("--cpus", "0", "--cpus must be greater than 0 (got 0.0)"),
        ("--max-procs", "1", "--max-procs must be greater than or equal to 4 (got 1)"),
    ],
)
def test_nonsense_limits_are_refused_up_front(
    state: Path, option: str, value: str, expected: str
) -> None:
    done = lci("exec", option, value, "print('ran')", state_dir=state)
    assert done.returncode == 2
    assert done.stderr == f"lci exec: {expected}\n"
    assert "ran" not in done.stdout


def test_files_go_in_before_and_come_out_after(state: Path, tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    data.write_text("a,b\n1,2\n3,4\n")
    out = tmp_path / "out"
    code = (
        "import pandas as pd\ndf = pd.read_csv('data.csv')\n"
        "df.sum().to_csv('sums.csv')\nopen('copy.txt', 'w').write(open('in/again.csv').read())"
    )
    done = lci(
        "exec", "--put", str(data), "--put", f"{data}:in/again.csv", code,
        "--get", "sums.csv", "--get", f"copy.txt:{tmp_path / 'mine.txt'}",
        "--out-dir", str(out), state_dir=state,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (out / "sums.csv").read_text().splitlines()[1:] == ["a,4", "b,6"]
    assert (tmp_path / "mine.txt").read_text() == data.read_text()
    assert f"[sums.csv saved to {out / 'sums.csv'}]" in done.stderr


def test_file_mistakes(state: Path, tmp_path: Path) -> None:
    missing = lci("exec", "--put", str(tmp_path / "nope.csv"), "1", state_dir=state)
    assert missing.returncode == 2
    assert missing.stderr == f"lci exec: --put {tmp_path / 'nope.csv'}: no such local file\n"
    absent = lci("exec", "--get", "never.txt", "1", state_dir=state)
    assert absent.returncode == 2 and absent.stderr.startswith("lci exec: ")
    assert "never.txt" in absent.stderr and "Traceback" not in absent.stderr


def test_shell_commands_run_in_the_sessions_sandbox_before_the_cells(state: Path) -> None:
    done = lci(
        "exec",
        "--shell",
        "echo from-shell > made.txt; echo visible; echo warn >&2",
        "--shell",
        "exit 5",
        "print(open('made.txt').read().strip())",
        state_dir=state,
    )
    assert done.returncode == 1, done.stderr  # the second command failed
    assert done.stdout.splitlines() == ["visible", "from-shell"]
    assert "warn" in done.stderr and "['exit 5': exit status 5]" in done.stderr
    as_json = lci("exec", "--json", "--shell", "printf ok", state_dir=state)
    assert as_json.returncode == 0, as_json.stderr
    result = json.loads(as_json.stdout)
    assert (result["stdout"], result["exit_code"]) == ("ok", 0)
    assert lci("exec", state_dir=state).returncode == 2  # nothing to run: a usage error


def test_snapshot_each_cell_undoes_a_failing_cell(state: Path) -> None:
    cells = [
        "x = 1\nopen('kept.txt', 'w').write('1')",
        "x = 2\nopen('kept.txt', 'w').write('2')\nopen('junk.txt', 'w').close()\n1 / 0",
        "import os\nprint(x, open('kept.txt').read(), os.path.exists('junk.txt'))",
    ]
    done = lci("exec", "--snapshot-each-cell", *cells, state_dir=state)
    assert done.returncode == 1, done.stderr  # a cell failed, all the same
    assert "ZeroDivisionError" in done.stderr
    assert "[cell 2 failed: the session is restored to its state before it" in done.stderr
    assert done.stdout.splitlines()[-1] == "1 1 False"
    first_fails = lci("exec", "--snapshot-each-cell", "--json", "y = 1; 1/0", "y", state_dir=state)
    lines = [json.loads(line) for line in first_fails.stdout.splitlines()]
    assert [e["outcome"] for e in lines] == ["error", "error"]  # y never existed
    assert lines[1]["error"]["name"] == "NameError"
    assert "[cell 1 failed" in first_fails.stderr
