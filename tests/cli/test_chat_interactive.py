"""`lci chat` without a question: a REPL on a terminal (a real pty), one session for every turn,
Ctrl-C stopping the running cell but not the chat, Ctrl-D ending it."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pexpect

from tests.cli.helpers import REPO, lci_env
from tests.fake_llm import FakeLLM, stream


def test_turns_share_the_session_and_ctrl_c_stops_only_the_turn(tmp_path: Path) -> None:
    def follows_the_first_turn(body: dict[str, Any]) -> None:
        contents = [m.get("content") for m in body["messages"]]
        assert "first" in contents and "x is set." in contents, contents

    with FakeLLM() as llm:
        llm.script(
            stream(calls=["x = 6 * 7"]),
            stream(text="x is set."),
            stream(calls=["x + 1"], expect=follows_the_first_turn),
            stream(text="It is 43."),
            stream(calls=["import time\ntime.sleep(60)"]),
            stream(calls=["x"]),
            stream(text="Still 42."),
        )
        env = lci_env(tmp_path / "state", XDG_STATE_HOME=str(tmp_path / "xdg"))
        chat = pexpect.spawn(
            sys.executable,
            ["-m", "engine.cli", "chat", "--base-url", llm.base_url, "--no-reasoning"],
            env=env,
            cwd=str(REPO),
            encoding="utf-8",
            timeout=60,
        )
        try:
            chat.expect_exact("you> ")
            chat.sendline("first")
            chat.expect_exact("x is set.")
            chat.expect_exact("you> ")
            chat.sendline("second")
            chat.expect_exact("```\n43\n```".replace("\n", "\r\n"))  # the session kept x
            chat.expect_exact("you> ")
            chat.sendline("sleep")
            chat.expect_exact("time.sleep(60)")
            time.sleep(1.0)  # the cell is running
            started = time.monotonic()
            chat.sendintr()
            chat.expect_exact("(interrupted")
            assert time.monotonic() - started < 15
            chat.expect_exact("you> ")
            chat.sendintr()  # at the prompt: the line is dropped, the chat goes on
            chat.expect_exact("^C")
            chat.expect_exact("you> ")
            chat.sendline("still there?")
            chat.expect_exact("Still 42.")  # the same session after the interrupt
            chat.expect_exact("you> ")
            chat.sendeof()
            chat.expect(pexpect.EOF)
        finally:
            chat.close(force=True)
        llm.check()
    assert chat.exitstatus == 0, chat.before
    assert "second" in (tmp_path / "xdg" / "lci" / "chat_history").read_text()
