"""Configuration mistakes end with one line saying what is wrong and what is allowed, exit 2;
`--version`; `-v` on either side of the subcommand."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.cli.helpers import lci


@pytest.mark.parametrize(
    ("env", "args", "expected"),
    [
        (
            {"LCI_LIMITS": "not json"},
            ["exec", "1"],
            "lci exec: LCI_LIMITS is not valid JSON "
            """(e.g. LCI_LIMITS='{"timeout_s": 30, "memory_mb": 512}')""",
        ),
        (
            {"LCI_LIMITS": '{"memory_mb": 1}'},
            ["exec", "1"],
            "lci exec: LCI_LIMITS.memory_mb must be greater than or equal to 16 (got 1)",
        ),
        (
            {"LCI_BACKEND": "bogus"},
            ["serve"],
            "lci serve: LCI_BACKEND must be 'subprocess' or 'docker' (got 'bogus')",
        ),
        (
            {},
            ["chat", "--max-rounds", "0", "hi"],
            "lci chat: --max-rounds must be greater than or equal to 1 (got 0)",
        ),
        ({}, ["serve", "--port", "99999"], "lci serve: --port must be less than or equal to 65535 (got 99999)"),
        (
            {"LCI_SERVER_PORT": "-5"},
            ["serve"],
            "lci serve: LCI_SERVER_PORT must be greater than or equal to 0 (got '-5')",
        ),
        (
            {},
            ["exec", "--out-dir", "/proc/nope", "1"],
            "lci exec: --out-dir /proc/nope: cannot create it (No such file or directory)",
        ),
        (
            {},
            ["chat", "--out-dir", "/proc/nope", "hi"],
            "lci chat: --out-dir /proc/nope: cannot create it (No such file or directory)",
        ),
        ({}, ["exec", "--session", "abc", "1"], "lci exec: --session needs --server (the lci serve that holds the session)"),
        (
            {"LCI_LIMITS": '{"memory_mb": 9000}'},
            ["exec", "1"],
            "lci exec: the default limits exceed LCI_MAX_LIMITS: LCI_LIMITS.memory_mb 9000 exceeds "
            "the server's maximum 8192",
        ),
        (
            {"LCI_SANDBOX_PYTHON": "/nonexistent/python3"},
            ["exec", "1"],
            "lci exec: the sandbox interpreter /nonexistent/python3 does not run (no such file): "
            "set LCI_SANDBOX_PYTHON (Settings.sandbox_python) to a Python 3.11+ interpreter, or "
            "leave it unset",
        ),
    ],
)  # fmt: skip
def test_one_line_and_exit_2(
    tmp_path: Path, env: dict[str, str], args: list[str], expected: str
) -> None:
    done = lci(*args, state_dir=tmp_path / "state", env=env)
    assert (done.returncode, done.stderr) == (2, expected + "\n")


def test_busy_port_fails_before_announcing(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = lci("serve", "--port", str(port), state_dir=tmp_path / "state")
    assert done.returncode == 2
    assert "serving on" not in done.stderr
    assert done.stderr == (
        f"lci serve: cannot listen on 127.0.0.1:{port}: Address already in use "
        "(another process listens there; choose another --port)\n"
    )


def test_version(tmp_path: Path) -> None:
    done = lci("--version", state_dir=tmp_path)
    assert done.returncode == 0
    assert done.stdout.startswith("lci ") and done.stdout.strip() != "lci"


@pytest.mark.parametrize("where", ["before", "after"])
def test_verbose_on_either_side(tmp_path: Path, where: str) -> None:
    args = ["-v", "exec", "6 * 7"] if where == "before" else ["exec", "-v", "6 * 7"]
    done = lci(*args, state_dir=tmp_path / "state")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "42" and "DEBUG" in done.stderr
