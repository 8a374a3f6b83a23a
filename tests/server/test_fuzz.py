"""Schemathesis, a property-based API fuzzer, against the OpenAPI document `lci serve` publishes:
no request it can generate makes the server fail with a 500, and every response matches the
document (status codes, content types, bodies, headers, authentication).

One check is off: positive_data_acceptance, because the compatible surfaces have rules JSON Schema
does not express (docs/conformance/common.md, request rules: the code interpreter refuses function
tools, and thinking switched off when the server requires it). 502-504 are allowed: the model
server or a sandbox can legitimately be unavailable for what a fuzzer asks (say, limits no host can
give).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.server.helpers import LciServer, forgiving_fake

CONFIG = """\
[checks.not_a_server_error]
expected-statuses = ["1XX", "2XX", "3XX", "4XX", "502", "503", "504"]

[checks.positive_data_acceptance]
enabled = false

# Multipart fields are text on the wire: a "number" sent as a form field is a valid string.
[[operations]]
include-operation-id = "upload_file"
checks.negative_data_rejection.enabled = false

# Ids of containers and files come from creates that generated data rarely passes (random file_ids
# are unknown), so these are mostly reached with unknown ids: still fuzzed, without the warning.
# openai/containers/test_api.py and openai/files/test_api.py run them with real ids.
[[operations]]
include-path-regex = "^/v1/(containers/[^/]+|files/[^/]+)"
warnings = false

# A new container's file_ids name files of the Files API and its memory_limit must fit the
# server's maximum: generated ones seldom do (404, 400), which the fuzzer reports as a schema
# mismatch depending on its draws. openai/containers/test_api.py creates them with real ones.
[[operations]]
include-operation-id = "create_container"
warnings = false

# In a live session, a path of its working directory that does not exist is a 404: the session
# (the resource a create made) is there all the same.
[[operations]]
include-path-regex = "^/v1/sessions/[^/]+/tree"
checks.ensure_resource_availability.enabled = false

# Signed URLs carry their credential in the query (a signature no fuzzer can make); commands,
# tree entries and snapshots are named by what a live session holds (pids, paths, snapshot ids),
# signing needs a file, and a fork a live session: mostly reached with unknown ones, still
# fuzzed, without the warning.
# Their own tests (sessions/test_commands.py, test_tree.py, test_signed_urls.py,
# test_snapshots.py) reach them with real ones.
[[operations]]
include-path-regex = "^/v1/(signed/sessions/|sessions/[^/]+/(commands|tree|files/sign|snapshots|fork))"
warnings = false
"""
# Streams that last until the client leaves (a directory watch, a command's events): a fuzzer
# would wait out its request timeout on each. Their own tests drive them.
NEVER_ENDING = ["--exclude-operation-id", "watch_tree", "--exclude-operation-id", "command_events"]


@pytest.mark.slow
def test_the_fuzzer_finds_no_server_errors(tmp_path: Path) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    env = {"LCI_MAX_SESSIONS": "8", "LCI_SERVER_MAX_BODY_BYTES": str(1 << 20)}
    with forgiving_fake() as fake, LciServer(fake.base_url, api_key="fuzz", env=env) as server:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "schemathesis.cli",
                "--config-file",
                str(config),
                "run",
                f"{server.url}/openapi.json",
                "--header",
                "Authorization: Bearer fuzz",
                "--phases",
                "coverage,fuzzing,stateful",
                "--max-examples",
                "8",
                "--seed",
                "20261124",
                "--workers",
                "1",
                "--suppress-health-check",
                "all",
                "--request-timeout",
                "30",
                *NEVER_ENDING,
            ],
            cwd=tmp_path,  # its hypothesis database stays out of the repository
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        server.stop()
        logs = server.logs()
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-5000:]
    assert "No issues found" in result.stdout
    assert "Traceback" not in logs, logs
