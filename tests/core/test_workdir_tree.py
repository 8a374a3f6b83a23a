"""The workdir as a tree (`Session.tree`), on both backends: stat, list with depth, make_dir,
remove, move, annotate, watch; and for each, the attacks: paths leaving the workdir, symlinks
planted by the sandbox's code (never followed), special files (never opened)."""

from __future__ import annotations

import pytest

from engine.core.session import Session
from engine.errors import FileAccessError, FileNotFound

OUTSIDE = ["../x", "/etc", "/etc/passwd", "a/../../x", "a\x00b"]


async def test_make_dir_list_and_stat(session: Session) -> None:
    tree = session.tree
    assert await tree.make_dir("a/b/c", 0o755) is True
    assert await tree.make_dir("a/b/c") is False  # exists: a flag, not an error
    await session.write_file("a/b/f.txt", b"hello")
    top = await tree.list("")
    assert [(e.path, e.type) for e in top] == [("a", "dir")]
    deep = await tree.list("a", depth=3)
    assert [(e.path, e.type) for e in deep] == [
        ("a/b", "dir"),
        ("a/b/c", "dir"),
        ("a/b/f.txt", "file"),
    ]
    info = await tree.stat("a/b/f.txt")
    assert (info.name, info.size, info.type, info.symlink_target) == ("f.txt", 5, "file", None)
    assert info.permissions.startswith("-rw") and info.owner and info.group
    made = await tree.stat("/mnt/data/a/b/c")  # an alias of the workdir
    assert (made.type, made.mode, made.permissions) == ("dir", 0o755, "drwxr-xr-x")
    assert (await tree.stat("")).type == "dir"
    assert [f.path for f in await session.list_files()] == ["a/b/f.txt"]  # as before: files only
    with pytest.raises(FileNotFound):
        await tree.stat("nothing")
    with pytest.raises(FileNotFound):
        await tree.list("nothing")
    await session.write_file("plain", b"x")
    with pytest.raises(FileAccessError):
        await tree.make_dir("plain")  # a file has the name


async def test_remove_file_and_whole_tree(session: Session) -> None:
    await session.execute(
        "import os\nos.makedirs('t/u/v')\nopen('t/u/v/x', 'w').write('x')\n"
        "open('t/y', 'w').write('y')\nos.chmod('t/u/v', 0o500)"
    )
    await session.tree.remove("t/y")
    await session.tree.remove("t")
    assert await session.tree.list("") == []
    with pytest.raises(FileNotFound):
        await session.tree.remove("t")


async def test_move_renames_within_the_workdir(session: Session) -> None:
    await session.write_file("old.txt", b"data")
    moved = await session.tree.move("old.txt", "sub/new.txt")
    assert (moved.path, moved.name, moved.size) == ("sub/new.txt", "new.txt", 4)
    assert await session.read_file("sub/new.txt") == b"data"
    with pytest.raises(FileNotFound):
        await session.tree.move("old.txt", "x")
    with pytest.raises(FileAccessError):
        await session.tree.move("sub", "sub/inner")


async def test_annotate_sets_mode_and_metadata(session: Session) -> None:
    await session.write_file("m.txt", b"x")
    await session.tree.annotate("m.txt", 0o644, {"Author": "ann"})
    info = await session.tree.stat("m.txt")
    assert (info.mode, info.metadata) == (0o644, {"author": "ann"})
    await session.tree.annotate("m.txt", None, None)
    assert (await session.tree.stat("m.txt")).metadata is None


async def test_every_operation_refuses_paths_outside_the_workdir(session: Session) -> None:
    tree = session.tree
    for path in OUTSIDE:
        for operation in (
            tree.stat(path),
            tree.list(path),
            tree.make_dir(path),
            tree.remove(path),
            tree.move(path, "x"),
            tree.move("x", path),
            tree.annotate(path, 0o777),
        ):
            with pytest.raises(FileAccessError):
                await operation
    for path in ("", "/mnt/data", "/home/user"):
        with pytest.raises(FileAccessError):
            await tree.remove(path)  # the workdir itself is not removable


async def test_symlinks_are_never_followed(session: Session) -> None:
    """The sandbox's code plants links to a directory and a file outside the workdir."""
    await session.execute(
        "import os\nos.umask(0o077)\nos.makedirs('/tmp/victim/d', exist_ok=True)\n"
        "open('/tmp/victim/secret', 'w').write('s')\n"
        "os.symlink('/tmp/victim', 'out')\nos.symlink('/tmp/victim/secret', 'file_link')\n"
        "os.mkfifo('fifo')"
    )
    tree = session.tree
    link = await tree.stat("out")
    assert (link.type, link.symlink_target) == ("symlink", "/tmp/victim")
    assert (await tree.stat("fifo")).type == "other"
    for operation in (
        tree.stat("out/secret"),
        tree.list("out"),
        tree.make_dir("out/new"),
        tree.remove("out/secret"),
        tree.move("out/secret", "stolen"),
        tree.move("file_link", "out/planted"),
        tree.annotate("file_link", 0o777),
        tree.annotate("fifo", 0o777),
    ):
        with pytest.raises(FileAccessError):
            await operation
    listed = {e.path: e.type for e in await tree.list("", depth=5)}
    assert listed == {"out": "symlink", "file_link": "symlink", "fifo": "other"}
    await tree.remove("out")  # the link itself goes, not what it points to
    await tree.move("file_link", "renamed_link")
    kept = await session.execute(
        "import os; sorted(os.listdir('/tmp/victim')), os.stat('/tmp/victim/secret').st_mode & 0o77"
        ", os.readlink('renamed_link')"
    )
    assert kept.result_text == "(['d', 'secret'], 0, '/tmp/victim/secret')"  # no chmod 777


async def test_watch_reports_changes(session: Session) -> None:
    await session.tree.make_dir("w")
    await session.write_file("w/a.txt", b"1")
    watcher = session.tree.watch("w", recursive=True)
    await watcher.start()
    assert await watcher.poll() == []
    await session.write_file("w/a.txt", b"22")
    await session.write_file("w/sub/b.txt", b"b")
    await session.tree.move("w/a.txt", "w/c.txt")
    await session.execute(
        "import os; os.chmod('w/sub/b.txt', 0o600 if os.stat('w/sub/b.txt').st_mode & 0o44 else 0o644)"
    )
    events = {(e.type, e.path) for e in await watcher.poll()}
    assert {
        ("create", "sub"),
        ("create", "sub/b.txt"),
        ("rename", "a.txt"),
        ("create", "c.txt"),
    } <= events
    await session.tree.remove("w/c.txt")
    assert [(e.type, e.path) for e in await watcher.poll()] == [("remove", "c.txt")]
    flat = session.tree.watch("w")
    await flat.start()
    await session.write_file("w/sub/deep.txt", b"d")
    assert all("deep" not in e.path for e in await flat.poll())
    with pytest.raises(FileNotFound):
        await session.tree.watch("missing").start()
