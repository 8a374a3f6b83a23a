"""The repository speaks only of itself: code, tests and docs cite documents it holds, and every
citation of a conformance page names a page and a section that exist."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CONFORMANCE = REPO / "docs" / "conformance"
SCANNED = ("engine", "tests", "docs", "README.md", "pyproject.toml")
_SKIPPED_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}

# Written in pieces so that this file does not match them itself.
OUTSIDE = {
    "the wire reference kept outside the repository": re.compile("api" + "_reference"),
    "a security guide other than docs/security.md": re.compile(r"(?<![/\[(])security\.md"),
    "the directory beside the repository": re.compile(r"\.\./shared\b"),
}

# `docs/conformance/<page>.md`, optionally followed by `, <section>`: lower-case words, possibly
# wrapped onto the next line of a docstring.
_PAGE_CITATION = re.compile(r"docs/conformance/([\w-]+\.md)(?:,\s+([a-z][a-z-]*(?:\s+[a-z-]+)*))?")
_LINK = re.compile(r"\]\(([\w-]+\.md)?#([\w-]+)\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*$", re.MULTILINE)


def text_files() -> Iterator[tuple[Path, str]]:
    for name in SCANNED:
        root = REPO / name
        paths = [root] if root.is_file() else sorted(root.rglob("*")) if root.is_dir() else []
        for path in paths:
            if not path.is_file() or _SKIPPED_DIRS & set(path.relative_to(REPO).parts):
                continue
            try:
                yield path, path.read_text(encoding="utf-8")
            except UnicodeDecodeError:  # images and other binary files cite nothing
                continue


def headings(page: Path) -> list[str]:
    return [heading.lower() for heading in _HEADING.findall(page.read_text(encoding="utf-8"))]


def anchor(heading: str) -> str:
    """The anchor a Markdown renderer gives a heading: lower case, punctuation dropped, spaces as
    hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def test_the_scan_reads_code_tests_and_docs() -> None:
    seen = {path.relative_to(REPO).parts[0] for path, _ in text_files()}
    assert {"engine", "tests", "docs"} <= seen


@pytest.mark.parametrize("what", sorted(OUTSIDE))
def test_nothing_cites_documents_outside_the_repository(what: str) -> None:
    pattern = OUTSIDE[what]
    found = [
        f"{path.relative_to(REPO)}:{text.count(chr(10), 0, match.start()) + 1}"
        for path, text in text_files()
        for match in pattern.finditer(text)
    ]
    assert not found, f"citations of {what}: {found}"


def test_citations_of_conformance_pages_name_existing_sections() -> None:
    broken = []
    for path, text in text_files():
        for match in _PAGE_CITATION.finditer(text):
            page, section = CONFORMANCE / match[1], match[2]
            where = f"{path.relative_to(REPO)}: {match[0]!r}"
            if not page.is_file():
                broken.append(f"{where} (no such page)")
            elif section is not None and " ".join(section.split()) not in headings(page):
                broken.append(f"{where} (no such section)")
    assert not broken, "\n".join(broken)


def test_links_between_conformance_pages_reach_a_heading() -> None:
    pages = sorted(CONFORMANCE.glob("*.md"))
    assert pages
    broken = []
    for page in pages:
        for target, fragment in _LINK.findall(page.read_text(encoding="utf-8")):
            linked = CONFORMANCE / target if target else page
            if not linked.is_file() or fragment not in map(anchor, headings(linked)):
                broken.append(f"{page.name}: {target}#{fragment}")
    assert not broken, broken
