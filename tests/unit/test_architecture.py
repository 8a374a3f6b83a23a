"""The layering rules of the design guide, checked on the source: dependencies point one way."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ENGINE = Path(__file__).parents[2] / "engine"


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def layer_imports(layer: str) -> dict[str, set[str]]:
    return {str(p.relative_to(ENGINE)): imported_modules(p) for p in (ENGINE / layer).rglob("*.py")}


def test_agent_uses_only_the_standard_library() -> None:
    for module, names in layer_imports("agent").items():
        foreign = {n for n in names if n.split(".")[0] not in sys.stdlib_module_names}
        if module == "agent/mpl_backend.py":  # loaded only once user code imported matplotlib
            foreign -= {"matplotlib.backend_bases", "matplotlib.backends.backend_agg"}
        assert not foreign, f"{module} imports {foreign}"


@pytest.mark.parametrize(
    ("layer", "forbidden"),
    [
        ("core", ("engine.orchestrator", "engine.server", "engine.cli")),
        ("orchestrator", ("engine.core", "engine.server", "engine.cli", "docker", "psutil")),
    ],
)
def test_layers_do_not_import_upward_or_sideways(layer: str, forbidden: tuple[str, ...]) -> None:
    for module, names in layer_imports(layer).items():
        bad = {n for n in names if n.startswith(forbidden)}
        assert not bad, f"{module} imports {bad}"


def test_foundation_modules_import_no_layer() -> None:
    for name in ("models.py", "errors.py", "config.py"):
        names = imported_modules(ENGINE / name)
        assert not {
            n
            for n in names
            if n.startswith(("engine.core", "engine.orchestrator", "engine.server", "docker"))
        }, name


def test_importing_the_engine_does_not_import_docker() -> None:
    code = (
        "import sys, engine, engine.api, engine.core.manager, engine.cli\n"
        "engine.SessionManager\n"
        "assert 'docker' not in sys.modules, 'docker imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
