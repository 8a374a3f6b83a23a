"""The README's runnable parts, extracted: the quick-start commands (fenced blocks after a
`<!-- quickstart -->` line) and the examples (after `<!-- example: NAME -->`; blocks of one name
form one program, in order). `python tests/readme.py quickstart` prints the quick-start commands,
which is how CI runs them exactly as written."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
_BLOCK = re.compile(
    r"<!-- (?:example: (?P<name>[\w-]+)|(?P<quick>quickstart)) -->\n"
    r"```(?P<lang>\w+)\n(?P<body>.*?)\n```",
    re.DOTALL,
)
# Where the examples say the servers are; the tests put their own there.
LCI_URL = "http://127.0.0.1:8000"
MODEL_URL = "http://127.0.0.1:8080/v1"


@dataclass
class Example:
    name: str
    lang: str
    code: str

    def expected_prints(self) -> list[str]:
        """What the example's comments promise a `print(...)` line shows."""
        found = re.findall(r"^\s*print\(.*\)\s+# (.+)$", self.code, re.MULTILINE)
        return [text.strip() for text in found]


def quickstart(text: str | None = None) -> list[str]:
    text = README.read_text() if text is None else text
    return [m["body"] for m in _BLOCK.finditer(text) if m["quick"]]


def examples(text: str | None = None) -> dict[str, Example]:
    text = README.read_text() if text is None else text
    found: dict[str, Example] = {}
    for match in _BLOCK.finditer(text):
        if match["quick"]:
            continue
        name, lang = match["name"], match["lang"]
        if name in found:
            found[name].code += "\n" + match["body"]
        else:
            found[name] = Example(name, lang, match["body"])
    return found


if __name__ == "__main__":
    if sys.argv[1:] == ["quickstart"]:
        print("\n".join(quickstart()))
    else:
        sys.exit("usage: python tests/readme.py quickstart")
