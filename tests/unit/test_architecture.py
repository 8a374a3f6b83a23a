"""The layering rules of the design guide, checked on the source: dependencies point one way."""

from __future__ import annotations

import ast
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from fnmatch import fnmatch
from itertools import pairwise
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
    # Imported inside a guard: without IPython the kernel runs cells itself.
    "agent/interactive.py": {"IPython", "traitlets"},
    # Imported inside a guard: without it the standard pickle carries a fork's namespace.
    "agent/transfer.py": {"cloudpickle"},
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


# Where each heavy or optional third-party package may be imported (paths in engine/, `*` any
# part of a path): a local engine never loads Ray, `import engine` never loads the docker SDK, and
# the web and MCP stacks stay behind the server's edge.
CONFINED = {
    "docker": ["core/backends/docker/api.py"],
    "ray": ["cluster/*"],
    "uvicorn": ["server/run.py", "server/http/connections.py"],
    "mcp": ["server/mcp/*"],
    # The observer's adapters: the engine's layers only call `engine.observe`.
    "prometheus_client": ["observability/metrics.py"],
    "opentelemetry": ["observability/tracing.py"],
}


@pytest.mark.parametrize("package", sorted(CONFINED))
def test_third_party_packages_are_imported_only_where_they_belong(package: str) -> None:
    allowed = CONFINED[package]
    users = []
    for path in ENGINE.rglob("*.py"):
        rel = path.relative_to(ENGINE).as_posix()
        if any(n.split(".")[0] == package for n in imported_modules(path)):
            users.append(rel)
            assert any(fnmatch(rel, pattern) for pattern in allowed), f"{rel} imports {package}"
    assert users, f"nothing imports {package}: is {CONFINED[package]} still right?"


def test_server_and_cli_use_the_orchestrators_public_names_only() -> None:
    for layer in ("server", "cli"):
        for module, names in layer_imports(layer).items():
            deep = {n for n in names if n.startswith("engine.orchestrator.")}
            assert not deep, f"{module} imports {deep}: use engine.orchestrator's exports"


def module_name(path: Path) -> str:
    parts = path.relative_to(ENGINE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Every engine module and the engine modules it imports, wherever the import statement is
    (in a function, under TYPE_CHECKING). `from package import name` depends on the module
    `package.name` if there is one, else on `package`."""
    paths = {module_name(path): path for path in ENGINE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parent, *([node.module] if node.module else [])])
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.add(sub if sub in paths else base)
        graph[name] = {t for t in targets if t in paths and t != name}
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's components of more than one node, each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = stack[stack.index(node) :]
            del stack[stack.index(node) :]
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def a_cycle(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """A shortest cycle through the component's first node, closed: [a, b, ..., a]."""
    start, inside = component[0], set(component)
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for other in sorted(graph[node] & inside):
            if other == start:
                return [*paths[node], start]
            if other not in paths:
                paths[other] = [*paths[node], other]
                queue.append(other)
    raise AssertionError(f"no cycle in {component}")


def import_cycles(graph: dict[str, set[str]]) -> list[str]:
    """The cycles of `graph`, folder by folder: within a package, each subpackage counts as one
    node, so a module that imports from a subpackage must not be imported by any module of it
    (each folder's dependencies point one way), and cycles of modules show at the level of their
    closest common package. Each cycle is named with one module import per step."""
    packages = {name for name in graph if any(o.startswith(name + ".") for o in graph)}
    cycles = []
    for package in sorted(packages):

        def child(module: str, package: str = package) -> str | None:
            if module == package:
                return "__init__"
            prefix = package + "."
            return module.removeprefix(prefix).split(".")[0] if module.startswith(prefix) else None

        folded: dict[str, set[str]] = {}
        witness: dict[tuple[str, str], str] = {}
        for module, targets in graph.items():
            if (here := child(module)) is None:
                continue
            folded.setdefault(here, set())
            for target in sorted(targets):
                there = child(target)
                if there is not None and there != here:
                    folded[here].add(there)
                    folded.setdefault(there, set())
                    witness.setdefault((here, there), f"{module} imports {target}")
        for component in strongly_connected(folded):
            cycle = a_cycle(folded, component)
            steps = [witness[step] for step in pairwise(cycle)]
            cycles.append(f"in {package}: {' -> '.join(cycle)} ({'; '.join(steps)})")
    return cycles


def test_no_import_cycles_in_the_engine() -> None:
    cycles = import_cycles(import_graph())
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_cycle_check_finds_cycles_between_modules_and_folders() -> None:
    modules = {"e": {"e.a"}, "e.a": {"e.b"}, "e.b": {"e.a"}, "e.p": set(), "e.p.x": set()}
    assert import_cycles(modules) == ["in e: a -> b -> a (e.a imports e.b; e.b imports e.a)"]
    modules = {"e": set(), "e.a": {"e.p.x"}, "e.p": set(), "e.p.x": set(), "e.p.y": {"e.a"}}
    assert import_cycles(modules) == ["in e: a -> p -> a (e.a imports e.p.x; e.p.y imports e.a)"]
    modules["e.a"] = {"e.p"}  # the package's __init__ is in the package
    assert import_cycles(modules) == ["in e: a -> p -> a (e.a imports e.p; e.p.y imports e.a)"]
    modules["e.p.y"] = {"e.p.x"}
    assert import_cycles(modules) == []
    modules["e.p.x"] = {"e.p"}  # a package's module importing its own __init__, which imports it
    modules["e.p"] = {"e.p.x"}
    assert import_cycles(modules) == [
        "in e.p: __init__ -> x -> __init__ (e.p imports e.p.x; e.p.x imports e.p)"
    ]


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
