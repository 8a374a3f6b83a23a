"""The HTTP client is what a program on another machine imports: it must not pull in the engine's
sandboxes, server or loop (nor the docker SDK)."""

from __future__ import annotations

import subprocess
import sys

from tests.unit.test_architecture import ENGINE, imported_modules

ALLOWED = {"engine.callbacks", "engine.command_models", "engine.errors", "engine.models", "engine"}


def test_client_imports_only_the_shared_modules() -> None:
    for path in (ENGINE / "client").rglob("*.py"):
        ours = {n for n in imported_modules(path) if n.split(".")[0] == "engine"}
        bad = {n for n in ours if n not in ALLOWED and not n.startswith("engine.client")}
        assert not bad, f"{path.relative_to(ENGINE)} imports {bad}"


def test_importing_the_client_loads_no_sandbox_code() -> None:
    code = (
        "import sys, engine.client\n"
        "heavy = [m for m in sys.modules if m.startswith(('engine.core', 'engine.server', "
        "'engine.orchestrator', 'docker', 'fastapi'))]\n"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
