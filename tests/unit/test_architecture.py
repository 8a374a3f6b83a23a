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


# Folders of modules that run outside the engine's process (the agent in the sandbox, the
# subprocess backend's scripts started by path with `python -I`), where nothing but the standard
# library is importable. Every file in them is checked, so a new one is too.
STANDALONE_FOLDERS = ["agent", "core/backends/subprocess/standalone"]
# What they may import besides the standard library and their own folder (relative imports).
BEYOND_STDLIB = {
    # The staged agent, on the path of the processes the launcher and the zygote become.
    "core/backends/subprocess/standalone": {"lci_agent"},
    # Loaded only once user code imported matplotlib.
    "agent/mpl_backend.py": {"matplotlib"},
}


def outside_imports(path: Path, rel: Path) -> set[str]:
    """What `path` (at `rel` in the engine) imports that is neither the standard library nor a
    module of its own folder (a relative import of a sibling), nor allowed by BEYOND_STDLIB."""
    allowed = BEYOND_STDLIB.get(str(rel.parent), set()) | BEYOND_STDLIB.get(str(rel), set())
    found: set[str] = set()
    for node in ast.walk(parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            targets = [node.module] if node.module else [alias.name for alias in node.names]
            found.update(
                f"{'.' * node.level}{target}"
                for target in targets
                if node.level > 1 or not (path.parent / f"{target.split('.')[0]}.py").exists()
            )
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        else:
            continue
        found.update(
            name
            for name in names
            if name.split(".")[0] not in sys.stdlib_module_names
            and name.split(".")[0] not in allowed
        )
    return found


@pytest.mark.parametrize("folder", STANDALONE_FOLDERS)
def test_standalone_modules_use_only_the_standard_library(folder: str) -> None:
    paths = sorted((ENGINE / folder).glob("*.py"))
    assert len(paths) > 1, f"nothing to check in {folder}"
    assert not [p for p in (ENGINE / folder).iterdir() if p.is_dir() and p.name != "__pycache__"]
    for path in paths:
        foreign = outside_imports(path, path.relative_to(ENGINE))
        assert not foreign, f"{path.relative_to(ENGINE)} imports {foreign}"


def test_the_standalone_check_can_fail(tmp_path: Path) -> None:
    (tmp_path / "sibling.py").write_text("")
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import os, json.decoder\nfrom . import sibling, missing\nfrom .sibling import x\n"
        "from ..core import y\ndef f():\n    import pydantic\nimport matplotlib.pyplot\n"
    )
    foreign = {".missing", "..core", "pydantic", "matplotlib.pyplot"}
    assert outside_imports(sample, Path("agent/sample.py")) == foreign
    assert outside_imports(sample, Path("agent/mpl_backend.py")) == foreign - {"matplotlib.pyplot"}


def test_backend_scripts_live_in_a_standalone_folder() -> None:
    """A module run as a script is started by path and imports only the standard library: it
    belongs in a `standalone` folder (checked above). The host only ever starts them."""
    for path in (ENGINE / "core" / "backends").rglob("*.py"):
        source = path.read_text()
        if "__main__" in source:
            assert path.parent.name == "standalone", f"{path.relative_to(ENGINE)} is a script"
    for path in ENGINE.rglob("*.py"):
        bad = {n for n in imported_modules(path) if ".standalone" in n}
        assert not bad, f"{path.relative_to(ENGINE)} imports {bad}: run it by path"


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
