"""The runnable parts of the README and the docs pages, extracted: the quick-start commands (fenced
blocks after a `<!-- quickstart -->` line, README only) and the examples (after
`<!-- example: NAME -->`; blocks of one name form one program, in order, and a name belongs to one
page). `python tests/readme.py quickstart` prints the quick-start commands, which is how CI runs
them exactly as written."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
_BLOCK = re.compile(
    r"<!-- (?:example: (?P<name>[\w-]+)|(?P<quick>quickstart)) -->\n"
    r"```(?P<lang>\w+)\n(?P<body>.*?)\n```",
    re.DOTALL,
)
MARKER = re.compile(r"^<!-- (?:example:|quickstart)", re.MULTILINE)
# Where the examples say the servers are; the tests put their own there.
LCI_URL = "http://127.0.0.1:8000"
MODEL_URL = "http://127.0.0.1:8080/v1"


@dataclass
class Example:
    name: str
    lang: str
    code: str
    page: str  # relative to the repository

    def expected_prints(self) -> list[str]:
        """What the example's comments promise a `print(...)` line shows."""
        found = re.findall(r"^\s*print\(.*\)\s+# (.+)$", self.code, re.MULTILINE)
        return [text.strip() for text in found]


def pages() -> list[Path]:
    """The README and every page under docs/."""
    return [README, *sorted(DOCS.rglob("*.md"))]


def quickstart(text: str | None = None) -> list[str]:
    text = README.read_text() if text is None else text
    return [m["body"] for m in _BLOCK.finditer(text) if m["quick"]]


def page_examples(page: Path) -> dict[str, Example]:
    found: dict[str, Example] = {}
    where = str(page.relative_to(ROOT))
    for match in _BLOCK.finditer(page.read_text()):
        if match["quick"]:
            continue
        name, lang = match["name"], match["lang"]
        if name in found:
            found[name].code += "\n" + match["body"]
        else:
            found[name] = Example(name, lang, match["body"], where)
    return found


def examples() -> dict[str, Example]:
    """Every marked example of every page, by name. A name used on two pages is refused."""
    found: dict[str, Example] = {}
    for page in pages():
        for name, example in page_examples(page).items():
            if name in found:
                raise ValueError(f"example {name!r} is in {found[name].page} and {example.page}")
            found[name] = example
    return found


def unparsed_markers(page: Path) -> int:
    """Markers on the page that are not directly followed by a fenced block with a language: they
    would silently run nothing."""
    text = page.read_text()
    return len(MARKER.findall(text)) - len(_BLOCK.findall(text))


if __name__ == "__main__":
    if sys.argv[1:] == ["quickstart"]:
        print("\n".join(quickstart()))
    else:
        sys.exit("usage: python tests/readme.py quickstart")
