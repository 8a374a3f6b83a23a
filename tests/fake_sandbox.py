"""A scripted in-process sandbox: the third implementation of the Sandbox seam, for testing the
session's logic (ladder, state machine, output routing) without processes, and for measuring the
host-side overhead of an execution on its own.

The cell's code selects the behaviour:
    "hang"            never answers; an interrupt ends it with KeyboardInterrupt
    "hang-hard"       never answers, ignores interrupts (the ladder must kill it)
    "crash"           the sandbox exits with status 3
    "junk"            garbage on the frame channel (a protocol violation: the sandbox is killed)
    "print:<text>"    writes <text> to stdout, then answers
    anything else     answers at once with the code itself as the displayed value
"""

from __future__ import annotations

import asyncio
from typing import Any

from engine.core.sandbox import ExitInfo, Sandbox, SessionHost
from engine.models import FileInfo, Isolation


class FakeSandbox(Sandbox):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.get_running_loop()
        self.current: dict[str, Any] | None = None
        self.interrupts = 0
        self.loop.call_soon(self._frames_received, _frame({"type": "hello", "protocol": 1}))

    def send_bytes(self, data: bytes) -> None:
        from engine.agent.protocol import FrameDecoder

        for request in FrameDecoder().feed(data):
            self.loop.call_soon(self._handle, request)

    def _handle(self, request: dict[str, Any]) -> None:
        code, exec_id = request["code"], request["id"]
        self.current = request
        if code.startswith("hang"):
            return
        if code == "crash":
            self._exited(ExitInfo(3))
            return
        if code == "junk":
            self._frames_received(b"\xff" * 64)
            return
        if code.startswith("print:"):
            self._stream_received("stdout", code[len("print:") :].encode())
            self._done(exec_id, "ok", None, None)
            return
        self._done(exec_id, "ok", {"text/plain": code}, None)

    def _done(self, exec_id: str, status: str, result: Any, error: Any) -> None:
        message = {
            "type": "done",
            "id": exec_id,
            "status": status,
            "result": result,
            "error": error,
        }
        self._frames_received(_frame(message))
        self.current = None

    def interrupt(self) -> None:
        self.interrupts += 1
        request = self.current
        if request is not None and request["code"] == "hang":
            error = {"name": "KeyboardInterrupt", "value": "", "traceback": ""}
            self.loop.call_soon(self._done, request["id"], "error", None, error)

    async def _terminate(self) -> None:
        self.loop.call_soon(self._exited, ExitInfo(-9))


def _frame(message: dict[str, Any]) -> bytes:
    from engine.agent.protocol import encode_frame

    return encode_frame(message)


class FakeHost(SessionHost):
    def __init__(self, sandbox: type[FakeSandbox] = FakeSandbox) -> None:
        self._sandbox = sandbox
        self.isolation = Isolation(notes=["fake sandbox: no isolation at all"])
        self.sandbox_workdir = "/fake"
        self.spawned: list[FakeSandbox] = []
        self.files: dict[str, bytes] = {}

    async def spawn(self) -> Sandbox:
        sandbox = self._sandbox()
        await sandbox.wait_ready(timeout=5)
        self.spawned.append(sandbox)
        return sandbox

    async def write_file(self, path: str, data: bytes) -> None:
        self.files[path] = data

    async def read_file(self, path: str, max_bytes: int) -> bytes:
        return self.files[path][:max_bytes]

    async def list_files(self) -> list[FileInfo]:
        return [FileInfo(path=p, size=len(d), modified_at=0) for p, d in self.files.items()]

    async def release(self) -> None:
        self.files.clear()
