#!/usr/bin/env python3
"""Writes the blocking HTTP client, engine/client/sync.py, from the async one, engine/client/aio.py:
`async` and `await` taken out, and each async name replaced by its blocking twin (the table below),
then formatted by ruff as the rest of the code.

    python .ci/unasync.py           # rewrite sync.py after a change to aio.py
    python .ci/unasync.py --check   # exit 1, showing the difference, when sync.py is out of date
"""

from __future__ import annotations

import argparse
import difflib
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "engine" / "client" / "aio.py"
TARGET = ROOT / "engine" / "client" / "sync.py"

SUBSTITUTIONS = [
    (r"\basync (def|with|for)\b", r"\1"),
    (r"\bawait ", ""),
    (r"\b__aenter__\b", "__enter__"),
    (r"\b__aexit__\b", "__exit__"),
    (r"\baclose\b", "close"),
    (r"\baread\b", "read"),
    (r"\baiter_lines\b", "iter_lines"),
    (r"\bAsyncClient\b", "Client"),
    (r"\bAsyncRemoteSession\b", "RemoteSession"),
    (r"\bAsyncRemoteCommands\b", "RemoteCommands"),
    (r"\bAsyncRemoteTree\b", "RemoteTree"),
    (r"\bAsyncIterator\b", "Iterator"),
]
DOCSTRING = '''"""The blocking client: `Client` and the `RemoteSession`s it creates or attaches to.

Generated from aio.py by .ci/unasync.py: do not edit it, change aio.py and run the script."""'''


def generate(source: str) -> str:
    text = re.sub(r'\A""".*?"""', lambda _: DOCSTRING, source, count=1, flags=re.DOTALL)
    if not text.startswith(DOCSTRING):
        raise SystemExit(f"{SOURCE} must start with its docstring")
    for pattern, replacement in SUBSTITUTIONS:
        text = re.sub(pattern, replacement, text)
    return _format(text)


def _format(text: str) -> str:
    # Imports first (a renamed name can change their order), then the layout.
    for command in (["check", "--select", "I", "--fix", "--quiet"], ["format"]):
        text = subprocess.run(
            [sys.executable, "-m", "ruff", *command, "--stdin-filename", str(TARGET), "-"],
            input=text,
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        ).stdout
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    parser.add_argument("--target", type=Path, default=TARGET, help=argparse.SUPPRESS)
    args = parser.parse_args()
    expected = generate(SOURCE.read_text())
    if not args.check:
        args.target.write_text(expected)
        return 0
    actual = args.target.read_text()
    if actual == expected:
        return 0
    diff = difflib.unified_diff(
        actual.splitlines(keepends=True),
        expected.splitlines(keepends=True),
        str(args.target),
        "generated from aio.py",
    )
    sys.stdout.writelines(diff)
    print(f"\n{args.target} is out of date: run python .ci/unasync.py", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
