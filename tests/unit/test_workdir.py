"""Host-side workdir access: confined to the directory, never following links, iterative cleanup."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.core import workdir as wd
from engine.errors import FileAccessError, FileNotFound


@pytest.mark.parametrize(
    ("path", "parts"),
    [("a.txt", ["a.txt"]), ("./d/a.txt", ["d", "a.txt"]), ("/workspace/d/a", ["d", "a"])],
)
def test_split_path_accepts_paths_inside(path: str, parts: list[str]) -> None:
    assert wd.split_path(path, "/workspace") == parts


@pytest.mark.parametrize(
    "path", ["..", "../x", "d/../../x", "/etc/passwd", "/workspacex/a", "", "."]
)
def test_split_path_refuses_paths_outside(path: str) -> None:
    with pytest.raises(FileAccessError):
        wd.split_path(path, "/workspace")


def test_write_read_list(tmp_path: Path) -> None:
    wd.write_file(str(tmp_path), ["d", "e", "f.bin"], b"\x00\x01", None)
    assert wd.read_file(str(tmp_path), ["d", "e", "f.bin"], 10) == b"\x00\x01"
    assert [(f.path, f.size) for f in wd.list_files(str(tmp_path))] == [("d/e/f.bin", 2)]
    with pytest.raises(FileNotFound):
        wd.read_file(str(tmp_path), ["missing"], 10)


def test_links_in_the_middle_or_end_are_never_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("host secret")
    root = tmp_path / "root"
    root.mkdir()
    (root / "dirlink").symlink_to(outside)
    (root / "filelink").symlink_to(outside / "secret")
    for parts in (["dirlink", "secret"], ["filelink"]):
        with pytest.raises(FileAccessError):
            wd.read_file(str(root), parts, 100)
        with pytest.raises(FileAccessError):
            wd.write_file(str(root), parts, b"x", None)
    assert (outside / "secret").read_text() == "host secret"
    assert wd.list_files(str(root)) == []


def test_fifo_is_not_opened(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(FileAccessError):  # would block forever if it were opened for reading
        wd.read_file(str(tmp_path), ["pipe"], 100)


def test_remove_tree_handles_depth_odd_names_and_permissions(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    root.mkdir()
    fd = os.open(root, os.O_RDONLY)
    for _ in range(3000):  # deeper than the recursion limit, and than PATH_MAX allows to name
        os.mkdir("dd", dir_fd=fd)
        inner = os.open("dd", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = inner
    os.close(fd)
    for name in ("-rf", "$(touch pwned)", "new\nline"):
        (root / name).write_text("x")
    (root / "locked").mkdir()
    (root / "locked" / "f").write_text("x")
    (root / "locked").chmod(0)
    (root / "escape").symlink_to(tmp_path)
    wd.remove_tree(str(root))
    assert not root.exists()
    assert tmp_path.exists() and not (tmp_path / "pwned").exists()
