"""The OpenAPI document is a contract: clients are generated from it. It must change only on
purpose, so it is kept here and compared byte for byte. After a deliberate change of a route or a
wire model, write the new one with `LCI_UPDATE_OPENAPI=1 pytest tests/server/test_openapi.py` and
review the diff."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from engine.config import Settings
from engine.server import create_app

SNAPSHOT = Path(__file__).with_name("openapi.json")


def document(settings: Settings) -> dict[str, Any]:
    return create_app(settings).openapi()


def test_the_openapi_document_is_unchanged(tmp_path: Path) -> None:
    text = json.dumps(document(Settings(state_dir=tmp_path)), indent=2)
    if os.environ.get("LCI_UPDATE_OPENAPI") == "1":
        SNAPSHOT.write_text(text)
    assert text == SNAPSHOT.read_text(), "the OpenAPI document changed; see this module's docstring"


def test_a_keyed_server_adds_only_its_bearer_scheme(tmp_path: Path) -> None:
    keyed = document(Settings(state_dir=tmp_path, api_key="secret"))
    assert keyed.pop("security") == [{"bearer": []}]
    assert keyed["components"].pop("securitySchemes") == {
        "bearer": {"type": "http", "scheme": "bearer"}
    }
    open_paths = set()
    for path, operations in keyed["paths"].items():
        for operation in operations.values():
            if operation.pop("security", None) == []:
                open_paths.add(path)
    # ... and the signed file URLs, whose credential is their query.
    assert open_paths == {"/health", "/v1/signed/sessions/{session_id}/files/{path}"}
    assert json.dumps(keyed, indent=2) == SNAPSHOT.read_text()
