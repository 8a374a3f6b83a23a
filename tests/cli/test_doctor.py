"""`lci doctor` on this host: what each backend gets, and a fix for each thing missing."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.cli.helpers import lci


def checks(tmp_path: Path, **env: str) -> tuple[int, dict[str, dict[str, Any]]]:
    done = lci("doctor", "--json", "--no-docker", state_dir=tmp_path / "state", env=env)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, {c["name"]: c for c in json.loads(done.stdout)}


def test_reports_every_layer(tmp_path: Path) -> None:
    _, found = checks(tmp_path)
    assert set(found) == {
        "sandbox interpreter", "namespaces", "cgroups", "seccomp", "CJK fonts", "state dir",
        "model server",
    }  # fmt: skip
    interpreter = found["sandbox interpreter"]
    assert interpreter["ok"] and "numpy, pandas, matplotlib" in interpreter["detail"]
    for check in found.values():
        assert check["ok"] or check["fix"], check  # whatever is missing comes with its fix


def test_what_is_optional_warns_without_failing(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    status, found = checks(tmp_path, LCI_LLM_BASE_URL=url)
    model = found["model server"]
    assert (model["ok"], model["optional"]) == (False, True)
    assert f"no model server at {url} (Connection refused)" in model["detail"] and model["fix"]
    assert found["CJK fonts"]["optional"] is True  # figures without CJK text need no such font
    assert "fonts-wqy-microhei" in found["CJK fonts"]["fix"] or found["CJK fonts"]["ok"]
    required_ok = all(c["ok"] for c in found.values() if not c["optional"])
    assert status == (0 if required_ok else 1)
    done = lci("doctor", "--no-docker", state_dir=tmp_path / "state", env={"LCI_LLM_BASE_URL": url})
    assert any(
        line.startswith("warning") and "model server" in line for line in done.stdout.splitlines()
    )

    status, found = checks(tmp_path, LCI_RAY_ADDRESS=f"127.0.0.1:{port}")
    ray = found["ray cluster"]
    assert status == 1 and not ray["optional"] and "cannot reach" in ray["detail"]


def test_an_interpreter_without_the_data_stack(tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    status, found = checks(tmp_path, LCI_SANDBOX_PYTHON=str(bare / "bin" / "python"))
    interpreter = found["sandbox interpreter"]
    assert status == 1 and not interpreter["ok"]
    assert "lacks numpy, pandas, matplotlib, sympy, scipy" in interpreter["detail"]
    assert interpreter["fix"].endswith("-m pip install numpy pandas matplotlib sympy scipy")


def test_a_state_dir_of_someone_else(tmp_path: Path) -> None:
    state = tmp_path / "theirs"
    state.mkdir()
    if os.geteuid() == 0:
        os.chown(state, 4242, 4242)
        expected = "belongs to uid 4242"
    else:
        state.chmod(0o777)
        expected = "writable by other users"
    status, found = checks(tmp_path, LCI_STATE_DIR=str(state))
    assert status == 1 and expected in found["state dir"]["detail"]
    assert found["state dir"]["fix"]


def test_human_output(tmp_path: Path) -> None:
    done = lci("doctor", "--no-docker", state_dir=tmp_path / "state")
    assert "sandbox interpreter" in done.stdout and "cgroups" in done.stdout
    lines = done.stdout.splitlines()
    for index, line in enumerate(lines):
        if line.startswith("MISSING"):
            assert "fix: " in lines[index + 1], done.stdout
