"""The file store under a state directory someone else could write to. The attack: an unprivileged
user prepares the state directory before root starts `lci serve`, with a file record whose content
is a symlink to /etc/shadow; downloading that file would hand out root's secret. The server must
refuse such a state directory before it starts, and never follow a link it finds in its store."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.server.helpers import REPO, LciServer, free_port

NOBODY = 65534
FILE_ID = "file-" + "ab" * 12
NO_MODEL = "http://127.0.0.1:9/v1"  # never called: these tests run no conversation

PLANT = """
import json, os, sys
state, secret, file_id = sys.argv[1:4]
os.makedirs(os.path.join(state, "files"), mode=0o755)
os.chmod(state, 0o755)
record = {"id": file_id, "filename": "notes.txt", "purpose": "user_data", "bytes": 64,
          "created_at": 1.0, "expires_at": None, "owner": ""}
with open(os.path.join(state, "files", file_id + ".json"), "w") as handle:
    json.dump(record, handle)
os.symlink(secret, os.path.join(state, "files", file_id))
"""


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A directory every user may create entries in, sticky as /tmp is."""
    path = Path(tempfile.mkdtemp(prefix="lci-planted-", dir="/tmp"))
    path.chmod(0o1777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _secret(directory: Path) -> Path:
    secret = directory / "shadow"
    secret.write_text("root:SECRET-HASH:19000:0:99999:7:::\n")
    secret.chmod(0o600)
    return secret


def _start_refused(state: Path) -> str:
    """What `lci serve` printed when it refused to start; fails the test, with what it leaked, if
    it started instead."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LCI_")}
    command = [sys.executable, "-m", "engine.cli", "serve", "--port", str(port)]
    command += ["--backend", "subprocess", "--llm-base-url", NO_MODEL]
    with subprocess.Popen(
        command, env={**env, "LCI_STATE_DIR": str(state)}, cwd=REPO, stderr=subprocess.PIPE
    ) as process:
        try:
            _, stderr = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            leaked = httpx.get(f"http://127.0.0.1:{port}/v1/files/{FILE_ID}/content").text
            process.kill()
            process.communicate()
            pytest.fail(f"lci serve started on a state dir nobody prepared; it served {leaked!r}")
    assert process.returncode == 2
    return stderr.decode()


def test_a_state_dir_another_user_prepared_is_refused_at_startup(public_dir: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the attacker runs as nobody: switching users needs root")
    state = public_dir / "state"
    secret = _secret(public_dir)
    subprocess.run(
        ["/usr/bin/python3", "-c", PLANT, str(state), str(secret), FILE_ID],
        user=NOBODY,
        group=NOBODY,
        check=True,
        cwd="/",
    )
    refused = _start_refused(state)
    assert "Traceback" not in refused, refused
    reason = [
        line
        for line in refused.splitlines()
        if line.startswith("lci serve: ") and not line.startswith("lci serve: warning: ")
    ]
    assert len(reason) == 1 and str(state) in reason[0] and "uid 65534" in reason[0], refused


@pytest.mark.parametrize("planted", ["content", "record"])
def test_a_link_in_the_store_is_never_followed(public_dir: Path, planted: str) -> None:
    """A store of this user's own with a link in it (restored from a backup, say): skipped."""
    state = public_dir / "state"
    state.mkdir(mode=0o711)
    files = state / "files"
    files.mkdir(mode=0o700)
    secret = _secret(public_dir)
    record = {"id": FILE_ID, "filename": "n.txt", "purpose": "user_data", "bytes": 8}
    record |= {"created_at": 1.0, "expires_at": None, "owner": ""}
    if planted == "content":
        (files / f"{FILE_ID}.json").write_text(json.dumps(record))
        (files / FILE_ID).symlink_to(secret)
    else:
        elsewhere = public_dir / "record.json"
        elsewhere.write_text(json.dumps(record))
        (files / f"{FILE_ID}.json").symlink_to(elsewhere)
        (files / FILE_ID).write_text("innocent")
    with LciServer(NO_MODEL, env={"LCI_STATE_DIR": str(state)}) as server:
        answer = httpx.get(f"{server.url}/v1/files/{FILE_ID}/content", timeout=10)
        assert "SECRET-HASH" not in answer.text
        assert answer.status_code == 404, answer.text
