"""/mnt/data (where code written for OpenAI's interpreter saves) and /home/user (E2B's) are the
session's working directory in every sandbox with a filesystem of its own, and the file API takes
all three spellings. The interpreter still starts in the workdir itself."""

from __future__ import annotations

import pytest

from engine.core.session import Session
from engine.errors import FileAccessError


async def test_the_aliases_are_the_working_directory(session: Session) -> None:
    code = (
        "import os\n"
        "open('/mnt/data/chart.csv', 'w').write('a,b\\n1,2\\n')\n"
        "open('/home/user/notes.txt', 'w').write('hello')\n"
        "(os.getcwd(), sorted(os.listdir('.')), os.path.samefile('/mnt/data', '/home/user'))"
    )
    result = await session.execute(code)
    assert result.error is None, result
    assert result.result_text == "('/workspace', ['chart.csv', 'notes.txt'], True)"
    for path in (
        "chart.csv",
        "/workspace/chart.csv",
        "/mnt/data/chart.csv",
        "/home/user/chart.csv",
    ):
        assert await session.read_file(path) == b"a,b\n1,2\n"
    await session.write_file("/mnt/data/in.txt", b"up")
    assert (await session.execute("open('in.txt').read()")).result_text == "'up'"
    listing = {f.path for f in await session.list_files()}
    assert {"chart.csv", "notes.txt", "in.txt"} <= listing


async def test_other_absolute_paths_are_still_refused(session: Session) -> None:
    for path in ("/etc/passwd", "/mnt/other", "/home/user/../../etc/passwd", "/home/userx/a"):
        with pytest.raises(FileAccessError):
            await session.read_file(path)
