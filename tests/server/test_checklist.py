"""Every item of the conformance checklist (docs/conformance/checklist.md) is covered by a test of
this package that names it with `@covers(...)`, and no test names an item the checklist lacks."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

import tests.server

CHECKLIST_PAGE = Path(__file__).resolve().parents[2] / "docs" / "conformance" / "checklist.md"
_ITEM = re.compile(r"^(\d+)\. ", re.MULTILINE)  # a numbered item starts a line of the page


def checklist_items() -> list[int]:
    """The item numbers of the checklist page, in the order they appear."""
    return [int(number) for number in _ITEM.findall(CHECKLIST_PAGE.read_text(encoding="utf-8"))]


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


def test_the_checklist_page_numbers_its_items_once() -> None:
    items = checklist_items()
    assert items, f"no numbered items found in {CHECKLIST_PAGE}"
    repeated = sorted({item for item in items if items.count(item) > 1})
    assert not repeated, f"checklist items numbered twice: {repeated}"


def test_every_checklist_item_is_covered() -> None:
    checklist = set(checklist_items())
    found = covered_items()
    unknown = {item: found[item] for item in sorted(set(found) - checklist)}
    assert not unknown, f"tests cover items the checklist does not have: {unknown}"
    missing = sorted(checklist - set(found))
    assert not missing, f"checklist items without a test: {missing}"
