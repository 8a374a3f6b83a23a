"""The kernel: one persistent namespace, cells run with notebook semantics, results sent as frames.

Run inside a sandbox as `python -I -B -u -c "<bootstrap>"`, which puts this package on sys.path as
`lci_agent` and calls `entry.main()`, which ends in `serve`. Requests arrive as frames on
`--requests-fd` (default stdin) and frames leave on `--frames-fd` (default stdout; a container's
attach stream, for instance). User code gets /dev/null as stdin and pipes as stdout and stderr,
which the agent pumps into `stream` frames on the same channel as everything else: output and
displays reach the host in the order they happened, and nothing user code prints can be mistaken
for a frame.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # the C module under `signal`
import builtins
import contextlib
import importlib
import importlib.machinery
import os
import signal
import sys
import types
from typing import Any

try:
    import resource
except ImportError:  # not on every platform the agent may run on
    resource = None  # type: ignore[assignment]

from . import display, interactive
from .cells import CellCompiler
from .channel import Channel, SilentChannel
from .display import Clipper
from .figures import install_matplotlib_hook
from .protocol import PROTOCOL_VERSION, FrameDecoder, encode_frame
from .report import error_info
from .snapshots import REQUESTS, Keeper
from .streams import StdStreams
from .workdir_imports import WorkdirFinders

# Imported now, not in the middle of a cell: user code may break the import system.
_PATH_FINDER = importlib.machinery.PathFinder
_CO_COROUTINE = 0x0080  # inspect.CO_COROUTINE, without importing inspect into every sandbox


class CPUTimeExceeded(BaseException):
    """Raised in the cell when it used up its CPU-time allowance."""

    # Named in tracebacks like a built-in exception, not by the agent's module path: the reader (a
    # model, often) should see the limit, not lci's internals.
    __module__ = "builtins"


class Kernel:
    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.forked = False
        self.interactive = interactive.for_kernel(
            self._publish, self.display, (lambda: self.max_text, lambda: self.max_display)
        )
        self.namespace: dict[str, Any] = self.interactive.namespace
        self.cell_count = 0
        self.workdir_finders = WorkdirFinders(os.getcwd())  # where cells write their modules
        self.exec_id: str | None = None
        self.max_display = 16 << 20
        self.max_text = 1 << 20
        self.max_frame = 64 << 20
        self.clip = display.Clipper()
        self.in_user_code = False
        self._loop: Any = None
        self.cells = CellCompiler(self.interactive.transform)
        self._handlers: dict[int, Any] = {signal.SIGINT: self._on_sigint}
        if hasattr(signal, "SIGXCPU"):
            self._handlers[signal.SIGXCPU] = self._on_sigxcpu
        self.streams = StdStreams()
        self.keeper = Keeper(os.getcwd(), channel.handover_fd, channel.hold, self._resumed)
        self.keeper.namespace = self.namespace
        self.keeper.baseline = frozenset(self.namespace)
        os.register_at_fork(before=self._before_fork, after_in_child=self._after_fork_in_child)
        install_matplotlib_hook(self.publish_figures)

    # -- signals -------------------------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        """(Re)install the agent's handlers where user code replaced them. The host interrupts a cell
        with SIGINT; the handler raises only while user code runs, so an interrupt that races with the
        end of a cell cannot tear a frame the agent is writing."""
        for signum, handler in self._handlers.items():
            # The C-level getsignal: the `signal` module's wrapper builds an enum on every call.
            if _signal.getsignal(signum) is not handler:
                signal.signal(signum, handler)

    def _on_sigint(self, signum: int, frame: types.FrameType | None) -> None:
        if self.in_user_code:
            raise KeyboardInterrupt

    def _on_sigxcpu(self, signum: int, frame: types.FrameType | None) -> None:
        if self.in_user_code:
            raise CPUTimeExceeded("CPU time limit of this execution exceeded")

    def _before_fork(self) -> None:
        if self.keeper.forking:
            return  # a snapshot of the kernel, not a fork by user code
        if not self.forked:
            _flush_std_streams()  # or the child would print the parent's buffered text again
            self.channel.before_fork()

    def _after_fork_in_child(self) -> None:
        # A child forked by user code (os.fork, multiprocessing) must never speak the protocol, or
        # the host would see duplicate results; it prints into its cell's own pipes.
        if self.keeper.forking:
            return
        if not self.forked:
            self.channel.in_forked_child()
            for fd in self.keeper.fds():
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.channel = SilentChannel()
        self.forked = True

    def _resumed(self) -> None:
        """In a kernel a restore made from a snapshot: threads did not survive the fork."""
        self.channel.restart_pump()
        self.streams.own_thread(self.channel.pump_ident)

    # -- display -------------------------------------------------------------------------------
    def display(self, *objects: Any, raw: bool = False, **options: Any) -> None:
        """Show objects as rich output (the `display()` builtin of notebooks, where the sandbox
        has no IPython; with `raw`, each object is a MIME bundle already)."""
        for obj in objects:
            if raw and isinstance(obj, dict):
                self._publish(obj, {})
                continue
            clip = display.Clipper()
            bundle = display.mime_bundle(obj, self.max_display, self.max_text, clip)
            self._send_display(bundle, clip.omitted)

    def _publish(self, data: dict[str, Any], metadata: dict[str, Any]) -> None:
        """A MIME bundle published by IPython's display system (or displayed raw), within the
        display limits."""
        clip = display.Clipper()
        bundle = _limited(data, self.max_display, self.max_text, clip)
        if bundle:
            self._send_display(bundle, clip.omitted)

    def publish_figures(self) -> None:
        for bundle in display.figure_bundles(self.max_display, self.max_text):
            self._send_display(bundle)

    def _send_display(self, bundle: dict[str, str], omitted: int = 0) -> None:
        _flush_std_streams()
        self.channel.drain()
        message: dict[str, Any] = {
            "type": "display",
            "id": self.exec_id,
            "data": bundle,
            "metadata": {},
        }
        if omitted:
            message["omitted"] = omitted
        self.channel.send_encoded(self._bounded(message))

    def _bounded(self, message: dict[str, Any]) -> bytes:
        """The frame of `message`, within the host's frame limit: JSON escapes can make a text
        within its byte budget several times larger, so an over-long frame loses its rich data
        and has its texts cut further, never reaching the host whole."""
        frame = encode_frame(message)
        for shrink in (4, 16, 64):
            if len(frame) <= self.max_frame:
                return frame
            message = _shrunk(message, self.max_text // shrink)
            frame = encode_frame(message)
        return encode_frame({k: message.get(k) for k in ("type", "id", "status")})

    # -- cells ---------------------------------------------------------------------------------
    def run_cell(self, request: dict[str, Any]) -> bytes:
        self.exec_id = str(request.get("id"))
        self.max_display = int(request.get("max_display_bytes") or self.max_display)
        self.max_text = int(request.get("max_text_bytes") or self.max_text)
        self.max_frame = int(request.get("max_frame_bytes") or self.max_frame)
        self.clip = clip = display.Clipper()
        self.cell_count += 1
        filename = f"<cell-{self.cell_count}>"
        status, result, error = "ok", None, None
        code = str(request.get("code", ""))
        self.interactive.record_input(self.cell_count, code)
        self.install_signal_handlers()
        self.streams.start_cell()  # before the pipes are emptied: no stale thread writes after
        self.channel.begin_cell(self.exec_id)
        _set_cpu_allowance(request.get("cpu_s"))
        try:
            self.workdir_finders.forget_listings()
            value = self._execute(code, filename)
            self.in_user_code = False
            if value is not None:
                self.interactive.record_output(self.cell_count, value)
                result = self._result_bundle(value, clip)
        except BaseException as exc:
            status, error = (
                "error",
                error_info(exc, self.max_text, clip, self.interactive.format_traceback),
            )
        finally:
            self.in_user_code = False
            self.install_signal_handlers()
        if self.forked:
            os._exit(0)  # a forked child finished the cell: it must not report or continue
        try:
            self.publish_figures()
        except BaseException as exc:
            status, error = (
                "error",
                error_info(exc, self.max_text, clip, self.interactive.format_traceback),
            )
        _flush_std_streams()
        self.streams.repair()
        self.channel.drain()
        self.channel.end_cell()
        done: dict[str, Any] = {
            "type": "done",
            "id": self.exec_id,
            "status": status,
            "result": result,
            "error": error,
        }
        broken = _broken_machinery()
        if broken:
            done["broken"] = broken
        if clip.omitted:
            done["omitted"] = clip.omitted
        return self._bounded(done)

    def _result_bundle(self, value: Any, clip: Clipper) -> dict[str, str] | None:
        """The displayed value of the cell. An object that displays itself
        (`_ipython_display_`) does so instead of having a result. A failing repr is the cell's
        error, reported with its traceback."""
        plain = type(value) in display.PLAIN_TYPES  # no display methods to look for
        show = None if plain else getattr(value, "_ipython_display_", None)
        if callable(show) and not isinstance(value, type):
            self.in_user_code = True
            show()
            self.in_user_code = False
            return None
        return display.mime_bundle(value, self.max_display, self.max_text, clip, strict=True)

    def _execute(self, code: str, filename: str) -> Any:
        compiled = self.cells.compile(code, filename)
        self.in_user_code = True
        self._run(compiled.body)
        if compiled.tail is None:
            return None
        value = self._run(compiled.tail)
        return None if compiled.quiet else value

    def _run(self, code: types.CodeType) -> Any:
        value = eval(code, self.namespace)
        if code.co_flags & _CO_COROUTINE:
            value = self._event_loop().run_until_complete(value)
        return value

    def _event_loop(self) -> Any:
        # One loop for the session, so tasks created by one cell survive into the next.
        if self._loop is None:
            import asyncio

            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
        return self._loop


def _limited(data: dict[str, Any], limit: int, text_limit: int, clip: Clipper) -> dict[str, str]:
    """A published MIME bundle as the host takes it: string values, texts cut to `text_limit`,
    binary forms over the room left out, JSON forms serialised."""
    bundle: dict[str, str] = {}
    display.add_forms(bundle, data, limit, text_limit, clip, skip=("text/plain",))
    plain = data.get("text/plain")
    if isinstance(plain, str):
        bundle["text/plain"] = clip(plain, min(text_limit, limit))
    return bundle


def _flush_std_streams() -> None:
    for stream in {
        id(s): s for s in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)
    }.values():
        try:
            if stream is not None:
                stream.flush()
        except Exception:
            pass


def _set_cpu_allowance(cpu_s: Any) -> None:
    """RLIMIT_CPU counts a process's whole life; re-arm the soft limit relative to what the agent
    has used so far, so each cell gets its own allowance. The wall-clock timeout enforced by the host
    is the real guarantee; this turns a CPU-bound cell into a catchable error sooner. (Between cells
    the agent only waits, so the allowance needs no reset after one.)"""
    if resource is None or cpu_s is None:
        return
    usage = resource.getrusage(resource.RUSAGE_SELF)
    soft = int(usage.ru_utime + usage.ru_stime + float(cpu_s)) + 1
    try:
        resource.setrlimit(resource.RLIMIT_CPU, (soft, resource.RLIM_INFINITY))
    except (ValueError, OSError):  # the hard limit is finite: stay below it
        _, hard = resource.getrlimit(resource.RLIMIT_CPU)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_CPU, (min(soft, hard), hard))


def _shrunk(message: dict[str, Any], budget: int) -> dict[str, Any]:
    """`message` with only plain text left in its bundles, and every text cut to `budget`."""
    clip = display.Clipper()
    out = dict(message)
    for key in ("data", "result", "error"):
        value = out.get(key)
        if isinstance(value, dict):
            kept = {k: v for k, v in value.items() if key == "error" or k == "text/plain"}
            out[key] = {k: clip(v, budget) if isinstance(v, str) else v for k, v in kept.items()}
    out["omitted"] = int(out.get("omitted") or 0) + clip.omitted + 1
    return out


def _broken_machinery() -> str | None:
    """What user code broke that the next cell cannot run without, if anything. The agent cannot
    rebuild an import system, so the host restarts the interpreter instead of serving a half-broken
    one."""
    modules = sys.modules
    if not isinstance(modules, dict) or "sys" not in modules or "builtins" not in modules:
        return "sys.modules was cleared"
    if not any(finder is _PATH_FINDER for finder in sys.meta_path):
        return "sys.meta_path lost its path finder"
    if not callable(getattr(builtins, "__import__", None)):
        return "builtins.__import__ was removed"
    return None


def _preload(names: list[str]) -> None:
    """Import modules before the first cell (a pre-started sandbox's head start). They land in
    sys.modules, not in the user's namespace; one that is missing or fails is skipped, and its
    import fails again, visibly, when a cell asks for it."""
    import importlib

    for name in names:
        try:
            importlib.import_module(name)
        except Exception:
            continue


def serve(options: dict[str, Any], requests_fd: int, channel: Channel) -> None:
    # Notebook semantics: modules the user writes into the working directory are importable.
    sys.path.insert(0, os.getcwd())
    # Before the kernel: a preloaded IPython gives the kernel its shell at once.
    _preload(options["preload"])
    kernel = Kernel(channel)
    kernel.install_signal_handlers()
    channel.start_pump()
    kernel.streams.own_thread(channel.pump_ident)
    channel.send(
        {
            "type": "hello",
            "protocol": PROTOCOL_VERSION,
            "pid": os.getpid(),
            "python": sys.version.split()[0],
        }
    )
    decoder = FrameDecoder()
    pending: list[dict[str, Any]] = []
    while True:
        while not pending:
            data = os.read(requests_fd, 1 << 16)
            if not data:
                pending.append({"type": "shutdown"})
            pending += decoder.feed(data)
        request = pending.pop(0)
        kind = request.get("type")
        if kind == "shutdown":
            break
        if kind == "execute":
            kernel.channel.send_encoded(kernel.run_cell(request))
        elif kind in REQUESTS:
            reply = kernel.keeper.handle(request, kernel.cell_count)
            if kernel.keeper.resumed:  # a restored kernel: requests read since are not its own
                kernel.keeper.resumed = False
                decoder, pending = FrameDecoder(), []
            kernel.channel.send(reply)
    _flush_std_streams()
    os._exit(0)
