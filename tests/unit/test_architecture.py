"""The layering rules of the design guide, checked on the source: dependencies point one way."""

from __future__ import annotations

import ast
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ENGINE = Path(__file__).parents[2] / "engine"


def parse(source: str) -> ast.Module:
    """CPython 3.11 keeps the AST validator's recursion count per thread, and a deep recursion in
    an earlier test of the same thread can leave it off ("AST constructor recursion depth
    mismatch"); a thread of its own starts clean."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(ast.parse, source).result()


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def layer_imports(layer: str) -> dict[str, set[str]]:
    return {str(p.relative_to(ENGINE)): imported_modules(p) for p in (ENGINE / layer).rglob("*.py")}


def foreign_imports(path: Path) -> set[str]:
    return {n for n in imported_modules(path) if n.split(".")[0] not in sys.stdlib_module_names}


def test_agent_uses_only_the_standard_library() -> None:
    for path in (ENGINE / "agent").rglob("*.py"):
        foreign = foreign_imports(path)
        if path.name == "mpl_backend.py":  # loaded only once user code imported matplotlib
            foreign -= {"matplotlib.backend_bases", "matplotlib.backends.backend_agg"}
        assert not foreign, f"{path.relative_to(ENGINE)} imports {foreign}"


@pytest.mark.parametrize("script", ["launcher.py", "zygote.py"])
def test_sandbox_side_scripts_use_only_the_standard_library(script: str) -> None:
    """They run as standalone scripts (the launcher inside the sandbox's namespaces), beside the
    staged agent (`lci_agent`, itself standard library only)."""
    path = ENGINE / "core" / "backends" / "subprocess" / script
    foreign = {n for n in foreign_imports(path) if n.split(".")[0] != "lci_agent"}
    assert not foreign, f"{script} imports {foreign}"


def test_backends_never_import_each_other() -> None:
    backends = ENGINE / "core" / "backends"
    names = [p.name for p in backends.iterdir() if p.is_dir() and (p / "__init__.py").exists()]
    assert set(names) >= {"subprocess", "docker"}
    for name in names:
        others = tuple(f"engine.core.backends.{other}" for other in names if other != name)
        for path in (backends / name).rglob("*.py"):
            bad = {n for n in imported_modules(path) if n.startswith(others)}
            assert not bad, f"{path.relative_to(ENGINE)} imports {bad}"


def test_only_the_docker_api_module_imports_docker() -> None:
    allowed = ENGINE / "core" / "backends" / "docker" / "api.py"
    for path in ENGINE.rglob("*.py"):
        uses = {n for n in imported_modules(path) if n.split(".")[0] == "docker"}
        assert path == allowed or not uses, f"{path.relative_to(ENGINE)} imports {uses}"


def test_only_the_cluster_package_imports_ray() -> None:
    """A local engine never loads Ray; the server reaches the cluster through engine.cluster."""
    cluster = ENGINE / "cluster"
    for path in ENGINE.rglob("*.py"):
        uses = {n for n in imported_modules(path) if n.split(".")[0] == "ray"}
        assert cluster in path.parents or not uses, f"{path.relative_to(ENGINE)} imports {uses}"


def test_server_and_cli_use_the_orchestrators_public_names_only() -> None:
    for layer in ("server", "cli"):
        for module, names in layer_imports(layer).items():
            deep = {n for n in names if n.startswith("engine.orchestrator.")}
            assert not deep, f"{module} imports {deep}: use engine.orchestrator's exports"


def test_modules_stay_small() -> None:
    """The design guide's hard cap: a module past 400 lines does more than one thing."""
    for path in ENGINE.rglob("*.py"):
        lines = len(path.read_text().splitlines())
        assert lines <= 400, f"{path.relative_to(ENGINE)} has {lines} lines"


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
        "import sys, engine, engine.api, engine.core.manager, engine.cli.main\n"
        "engine.SessionManager\n"
        "assert 'docker' not in sys.modules, 'docker imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
