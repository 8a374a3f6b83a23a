"""One `lci chat`: a sandbox session and a conversation kept across questions, and the files that go
in before the first question, come out after each answer (what the code wrote), and at the end
(`--get`)."""

from __future__ import annotations

import argparse
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from engine.cli.chat_output import ChatPrinter
from engine.cli.demo_model import DEMO_MODEL, DemoModel
from engine.config import Settings
from engine.core.manager import SessionManager
from engine.core.session import Session
from engine.models import FileInfo, SessionSpec
from engine.orchestrator import ErrorEvent, Final, LoopOptions, Orchestrator, UpstreamClient
from engine.session_runner import SessionRunner

# Files the code wrote are copied out after each answer, up to this many per answer and this size
# each (a model that writes a thousand files, or a huge one, gets a line saying so instead).
MAX_SAVED_FILES = 20
MAX_SAVED_BYTES = 64 << 20


@dataclass
class Files:
    puts: list[tuple[Path, str]]  # local file -> path in the working directory
    gets: list[tuple[str, Path]]  # path in the working directory -> local file
    out_dir: Path


class ChatSession:
    """The model server (or the demo model), the session manager and the loop of one chat."""

    def __init__(
        self,
        args: argparse.Namespace,
        settings: Settings,
        spec: SessionSpec,
        options: LoopOptions,
        files: Files,
    ) -> None:
        self.args = args
        self.options = options
        self.files = files
        self.conversation = uuid.uuid4().hex
        self.history: list[dict[str, Any]] = []
        if args.system:
            self.history.append({"role": "system", "content": args.system})
        self.model = args.model or settings.llm_model
        # `--model demo` needs no server unless one is named: the scripted model runs in-process.
        self._demo = DemoModel() if self.model == DEMO_MODEL and not args.base_url else None
        base_url = self._demo.base_url if self._demo else args.base_url or settings.llm_base_url
        self._manager = SessionManager(settings)
        self._upstream = UpstreamClient(base_url, args.api_key or settings.llm_api_key)
        self._runner = SessionRunner(self._manager, spec)
        self._known: dict[str, tuple[int, float]] = {}  # the working directory after the last turn
        self._saved: set[Path] = set()  # local files this chat wrote (it may write them again)

    async def __aenter__(self) -> ChatSession:
        if self._demo:
            self._demo.__enter__()
        await self._manager.__aenter__()
        await self._upstream.__aenter__()
        if self.files.puts:
            session = await self._runner.session(self.conversation)
            for local, target in self.files.puts:
                await session.write_file(target, local.read_bytes())
            self._known = _snapshot(await session.list_files())
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            await self._upstream.__aexit__(kind, exc, tb)
            await self._manager.__aexit__(kind, exc, tb)
        finally:
            if self._demo:
                self._demo.__exit__(kind, exc, tb)

    async def ask(self, question: str) -> int:
        """One question through the loop, printed live; its exit code (as `lci chat`'s). The
        question and the answer join the conversation; a turn that failed or was cancelled
        leaves it as it was."""
        printer = ChatPrinter(
            sys.stdout,
            self.files.out_dir,
            reasoning=not self.args.no_reasoning,
            as_json=self.args.json,
        )
        messages = [*self.history, {"role": "user", "content": self._with_uploads(question)}]
        shell = self._runner if self.options.shell else None
        orchestrator = Orchestrator(self._upstream, self._runner, self.model, shell=shell)
        answer = None
        async for event in orchestrator.run(
            messages, conversation_id=self.conversation, options=self.options
        ):
            printer.show(event)
            if isinstance(event, Final):
                answer = event.text
            elif isinstance(event, ErrorEvent):
                answer = None
        if answer is not None:
            self.history = [*messages, {"role": "assistant", "content": answer}]
        await self.save_written(printer)
        return printer.exit_code

    def _with_uploads(self, question: str) -> str:
        """The first question says which files were put into the working directory."""
        if not self.files.puts or any(m["role"] == "assistant" for m in self.history):
            return question
        names = ", ".join(target for _, target in self.files.puts)
        return f"{question}\n\n(Files in the working directory: {names})"

    async def _session(self) -> Session | None:
        session_id = self._runner.session_id(self.conversation)
        return None if session_id is None else await self._runner.session(self.conversation)

    async def save_written(self, printer: ChatPrinter) -> None:
        """Copy the files the code wrote or changed since the last turn into --out-dir."""
        session = await self._session()
        if session is None:
            return
        infos = await session.list_files()
        changed = [
            i
            for i in infos
            if self._known.get(i.path) != (i.size, i.modified_at) and _relative(i.path)
        ]
        self._known = _snapshot(infos)
        for number, info in enumerate(changed):
            if number == MAX_SAVED_FILES:
                printer.note(f"{len(changed) - number} more files written (not saved)")
                break
            if info.size > MAX_SAVED_BYTES:
                printer.note(f"file not saved: {info.path} ({info.size} bytes, too large)")
                continue
            local = self._local_path(info.path)
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_bytes(await session.read_file(info.path))
            self._saved.add(local)
            printer.note(f"file saved: {local}")

    def _local_path(self, path: str) -> Path:
        """Where a file of the working directory is saved: under --out-dir at the same relative
        path, unless a file this chat did not save is there (then `name-1.ext`, ...): a model's
        `README.md` never overwrites the user's."""
        local = self.files.out_dir / path
        number = 0
        while local.exists() and local not in self._saved:
            number += 1
            local = local.with_name(f"{Path(path).stem}-{number}{Path(path).suffix}")
        return local

    async def fetch(self) -> None:
        """Copy the `--get` files out (starting the session if no code ran: a file put there
        can be fetched back)."""
        if not self.files.gets:
            return
        session = await self._runner.session(self.conversation)
        for remote, local in self.files.gets:
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_bytes(await session.read_file(remote))
            print(f"[{remote} saved to {local}]", file=sys.stderr, flush=True)


def _relative(path: str) -> bool:
    """A path that stays inside --out-dir (the sandbox reports relative paths; this makes sure)."""
    parts = Path(path).parts
    return bool(parts) and not Path(path).is_absolute() and ".." not in parts


def _snapshot(infos: list[FileInfo]) -> dict[str, tuple[int, float]]:
    return {info.path: (info.size, info.modified_at) for info in infos}
