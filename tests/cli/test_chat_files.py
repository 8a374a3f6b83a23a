"""`lci chat` with files and a network, as a real subprocess against the fake model server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.cli.helpers import lci
from tests.fake_llm import FakeLLM, stream

WRITE = (
    "import os\n"
    "text = open('data.txt').read()\n"
    "os.makedirs('out', exist_ok=True)\n"
    "open('out/report.txt', 'w').write(text.upper())\n"
    "open('README.md', 'w').write('the model wrote this')\n"
    "len(text)"
)


def test_put_get_and_the_files_the_code_wrote(tmp_path: Path) -> None:
    local = tmp_path / "data.txt"
    local.write_text("hello files\n")
    out_dir = tmp_path / "saved"
    out_dir.mkdir()
    (out_dir / "README.md").write_text("the user's own")  # never overwritten

    def says_which_files(body: dict[str, Any]) -> None:
        assert "(Files in the working directory: data.txt)" in body["messages"][-1]["content"]

    with FakeLLM() as llm:
        llm.script(stream(calls=[WRITE], expect=says_which_files), stream(text="Done."))
        done = lci(
            "chat",
            "--base-url",
            llm.base_url,
            "--put",
            str(local),
            "--get",
            f"out/report.txt:{tmp_path / 'fetched.txt'}",
            "--out-dir",
            str(out_dir),
            "Shout the file.",
            state_dir=tmp_path / "state",
        )
        llm.check()
    assert done.returncode == 0, done.stderr
    assert "execute_result:\n\n```\n12\n```" in done.stdout
    assert (out_dir / "out" / "report.txt").read_text() == "HELLO FILES\n"
    assert f"file saved: {out_dir / 'out' / 'report.txt'}" in done.stdout
    assert (out_dir / "README.md").read_text() == "the user's own"
    assert (out_dir / "README-1.md").read_text() == "the model wrote this"
    assert not (out_dir / "data.txt").exists()  # put there, not written by the code
    assert (tmp_path / "fetched.txt").read_text() == "HELLO FILES\n"
    assert "[out/report.txt saved to" in done.stderr


def test_network_gives_the_sandbox_a_way_out(tmp_path: Path) -> None:
    code = "import socket\n[name for _, name in socket.if_nameindex()]"
    seen = {}
    for flags in ([], ["--network"]):
        with FakeLLM() as llm:
            llm.script(stream(calls=[code]), stream(text="ok"))
            done = lci("chat", "--base-url", llm.base_url, *flags, "q", state_dir=tmp_path / "s")
        assert done.returncode == 0, done.stderr
        seen[bool(flags)] = done.stdout.split("execute_result:\n\n```\n")[1].split("\n")[0]
    # Without --network only the sandbox's own loopback; with it, slirp4netns's tap device.
    assert seen == {False: "['lo']", True: "['lo', 'tap0']"}
