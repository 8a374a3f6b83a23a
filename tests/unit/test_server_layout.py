"""The server's layout, checked on the source: one folder per surface, composed only by `app.py`;
`http/` and `runtime/` shared by all and importing none; no surface importing another."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.test_architecture import imported_modules, parse

SERVER = Path(__file__).parents[2] / "engine" / "server"
SURFACES = ("openai", "dashscope", "mcp", "e2b", "sessions", "ui")
SHARED = ("http", "runtime")
# Words that name a surface: the shared folders must not know them (errors.py's table aside).
SURFACE_WORDS = ("openai", "responses", "chat", "container", "dashscope", "mcp", "e2b", "sandbox")


def modules_of(folder: str) -> list[Path]:
    paths = sorted((SERVER / folder).rglob("*.py"))
    assert paths, f"engine/server/{folder} has no modules"  # a rule over nothing proves nothing
    return paths


def surface_imports(path: Path) -> set[str]:
    """The surfaces whose modules `path` imports (at any depth, imports inside functions too)."""
    found = set()
    for name in imported_modules(path):
        parts = name.split(".")
        if parts[:2] == ["engine", "server"] and len(parts) > 2 and parts[2] in SURFACES:
            found.add(parts[2])
    return found


def test_every_surface_and_shared_part_is_a_folder() -> None:
    flat = {p.name for p in SERVER.glob("*.py")}
    assert flat == {"__init__.py", "app.py", "run.py"}, f"modules left flat: {flat}"
    for folder in (*SURFACES, *SHARED):
        assert (SERVER / folder / "__init__.py").is_file(), f"engine/server/{folder} is no package"
    for surface in SURFACES:
        assert (SERVER / surface / "mount.py").is_file(), f"{surface} has no mount.py"


def test_no_surface_imports_another() -> None:
    for surface in SURFACES:
        for path in modules_of(surface):
            others = surface_imports(path) - {surface}
            assert not others, f"{path.relative_to(SERVER)} imports the surfaces {others}"


@pytest.mark.parametrize("folder", SHARED)
def test_shared_parts_import_no_surface(folder: str) -> None:
    for path in modules_of(folder):
        assert not surface_imports(path), f"{path.relative_to(SERVER)} imports a surface"


def test_http_does_not_depend_on_the_runtime() -> None:
    for path in modules_of("http"):
        bad = {
            n
            for n in imported_modules(path)
            if n.startswith(("engine.server.runtime", "engine.server.app", "engine.orchestrator"))
        }
        assert not bad, f"{path.relative_to(SERVER)} imports {bad}"


def _names_and_paths(path: Path) -> set[str]:
    """Identifiers defined or used in `path`, and the URL paths it spells (docstrings left out)."""
    found: set[str] = set()
    for node in ast.walk(parse(path.read_text())):
        if isinstance(node, ast.Name):
            found.add(node.id)
        elif isinstance(node, ast.Attribute):
            found.add(node.attr)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found.add(node.name)
        elif isinstance(node, ast.Constant) and str(node.value).startswith("/"):
            found.add(str(node.value))
    return found


def test_http_names_no_surface_except_the_error_table() -> None:
    for path in modules_of("http"):
        if path.name == "errors.py":  # the one table of which path gets which error shape
            continue
        named = {
            name
            for name in _names_and_paths(path)
            if any(word in name.lower() for word in SURFACE_WORDS)
        }
        assert not named, f"{path.relative_to(SERVER)} names surfaces: {named}"


def test_only_the_app_lists_the_surfaces() -> None:
    mounts = {f"engine.server.{surface}.mount" for surface in SURFACES}
    listed_by = set()
    for path in SERVER.rglob("*.py"):
        names = imported_modules(path)
        froms = {
            f"{node.module}.{alias.name}"
            for node in ast.walk(parse(path.read_text()))
            if isinstance(node, ast.ImportFrom) and node.module
            for alias in node.names
        }
        if (names | froms) & mounts:
            listed_by.add(path.relative_to(SERVER).as_posix())
    assert listed_by == {"app.py"}


def test_reading_the_server_options_loads_no_web_stack() -> None:
    web = ("fastapi", "starlette", "uvicorn", "mcp", "httpx", "engine.server.app")
    code = (
        "import sys, engine.server.runtime.options\n"
        f"print(sorted(m for m in {web!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]", f"importing the options loaded {out.strip()}"
