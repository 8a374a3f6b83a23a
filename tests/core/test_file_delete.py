"""Deleting a file of a session's working directory (what the container files API's delete uses), on
both backends: regular files only, nothing outside the workdir, symlinks never followed."""

from __future__ import annotations

import pytest

from engine.core.session import Session
from engine.errors import FileAccessError, FileNotFound


async def test_delete_removes_a_file_the_code_wrote(session: Session) -> None:
    await session.execute("import os; os.mkdir('d'); open('d/x.txt', 'w').write('x')")
    assert [f.path for f in await session.list_files()] == ["d/x.txt"]
    await session.delete_file("d/x.txt")
    assert await session.list_files() == []
    gone = await session.execute("import os; os.path.exists('d/x.txt')")
    assert gone.result_text == "False"
    with pytest.raises(FileNotFound):
        await session.delete_file("d/x.txt")


async def test_delete_refuses_what_is_not_a_regular_file(session: Session) -> None:
    setup = "import os; open('/tmp/keep', 'w').write('k'); os.symlink('/tmp/keep', 'link'); os.mkdir('dir')"
    await session.execute(setup)
    with pytest.raises(FileAccessError):
        await session.delete_file("link")
    with pytest.raises(FileAccessError):
        await session.delete_file("dir")
    with pytest.raises(FileAccessError):
        await session.delete_file("../etc/passwd")
    kept = await session.execute("import os; os.path.islink('link'), open('/tmp/keep').read()")
    assert kept.result_text == "(True, 'k')"
