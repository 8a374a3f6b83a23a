"""The blocking HTTP client is generated from the async one: a change to either alone fails here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]
SCRIPT = ROOT / ".ci" / "unasync.py"
SYNC = ROOT / "engine" / "client" / "sync.py"


def check(target: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(SCRIPT), "--check", "--target", str(target)]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def test_sync_client_is_generated_from_the_async_one() -> None:
    done = check(SYNC)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_hand_edit_of_the_sync_client_is_caught(tmp_path: Path) -> None:
    edited = tmp_path / "sync.py"
    edited.write_text(SYNC.read_text().replace("def list_files", "def list_all_files"))
    done = check(edited)
    assert done.returncode == 1
    assert "+    def list_files" in done.stdout and "out of date" in done.stderr
