"""Every item of the conformance checklist (api_reference section 7) is covered by a test of this
package that names it with `@covers(...)`."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import tests.server

CHECKLIST = range(1, 55)


def covered_items() -> dict[int, list[str]]:
    found: dict[int, list[str]] = {}
    for module_info in pkgutil.walk_packages(tests.server.__path__, "tests.server."):
        if not module_info.name.rpartition(".")[2].startswith("test_"):
            continue
        module = importlib.import_module(module_info.name)
        for name, function in inspect.getmembers(module, inspect.isfunction):
            for mark in getattr(function, "pytestmark", []):
                if isinstance(mark, pytest.Mark) and mark.name == "covers":
                    for item in mark.args:
                        found.setdefault(item, []).append(f"{module_info.name}.{name}")
    return found


def test_every_checklist_item_is_covered() -> None:
    found = covered_items()
    assert set(found) <= set(CHECKLIST), f"unknown items: {set(found) - set(CHECKLIST)}"
    missing = [item for item in CHECKLIST if item not in found]
    assert not missing, f"checklist items without a test: {missing}"
