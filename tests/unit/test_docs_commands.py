"""The commands the README and docs/ show work as written: every `pip install` of lci is a form
that installs from the clone and names extras pyproject.toml defines, and no `lci serve` is shown
with a key on the command line (the server refuses `--api-key`)."""

from __future__ import annotations

import re
import tomllib

from tests.readme import ROOT, pages

PAGES = [*pages(), ROOT / "CONTRIBUTING.md"]
EXTRAS = set(
    tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
)
# `pip install` and its arguments, up to the end of the line, a closing backtick, `&&` or `#`.
_PIP = re.compile(r"(?<![%\w])pip install((?:[ \t]+(?!&&|#)[^\s`]+)*)")
_LCI_TARGET = re.compile(r"""^['"]?(?P<target>\.|lci)(?:\[(?P<extras>[^\]]*)\])?['"]?$""")


def install_lines() -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        for match in _PIP.finditer(page.read_text()):
            found.append((page.relative_to(ROOT).as_posix(), match.group(0)))
    return found


def test_pip_install_lines_work_from_a_clone() -> None:
    lines = install_lines()
    assert any(".[e2b]" in line for _, line in lines)  # the search finds what it is for
    for page, line in lines:
        for argument in line.split()[2:]:
            target = _LCI_TARGET.match(argument)
            if target is None:
                continue  # a third-party package (mcp), an option (-e)
            assert target["target"] == ".", f"{page}: {line!r} does not install from a clone"
            assert "-e" in line.split(), f"{page}: {line!r}: the clone installs editable (-e)"
            for extra in filter(None, (target["extras"] or "").split(",")):
                assert extra in EXTRAS, f"{page}: {line!r} names extra {extra!r}, not in pyproject"


def test_no_page_puts_a_key_on_the_serve_command_line() -> None:
    for page in PAGES:
        for line in page.read_text().splitlines():
            assert not re.search(r"--api-key(?!-file)[ =]+[^\s`)]", line), f"{page}: {line}"
