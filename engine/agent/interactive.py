"""IPython inside the kernel: its input transformations (common indentation, `%` and `%%` magics,
`!cmd`), its display system (`display`, `HTML`, `Markdown`, `raw=True` MIME dicts, `_ipython_display_`)
and `get_ipython()`, when the sandbox's Python has IPython; the notebook history (`In`, `Out`, `_`,
`__`, `___`, `_N`, `_i`...) always.

Cells still run on the kernel's own path: IPython's `run_cell` costs more than the whole round trip
of a small cell. A cell that compiles as Python is Python to IPython too (every transformation
rewrites only code that is not), so the shell is asked only when a cell does not compile. Its
display machinery is live from the start, so `from IPython.display import display` reaches the host.

Making the shell costs tens of milliseconds, so a fork server or a pooled container makes it once
before a session claims it (`prepare`), and a cold kernel makes it on first need: a cell that does not
compile, or user code importing IPython (which must find it initialised, or `display` only prints).
Without IPython, the common indentation is still removed; magics fail as the syntax errors they are.
"""

from __future__ import annotations

# Imported here, not when a kernel starts: a fork server imports this module once for all.
import os
import sys
import textwrap
from collections.abc import Callable
from typing import Any

from . import figures, ipython_formats
from .report import user_traceback

Publish = Callable[[dict[str, Any], dict[str, Any]], None]

_OUTPUT_CACHE = 1000  # as IPython's: Out keeps at most this many results before it is cleared
_prepared: Interactive | None = None  # made ahead of a session, with its shell
# The running cell's text and display budgets, as the kernel reads them; the agent's formatters,
# installed with the shell (before a fork server forks), read them through here.
_limits: list[Callable[[], int]] = [lambda: 1 << 20, lambda: 16 << 20]


def prepare() -> bool:
    """Make the shell ahead of the session (a fork server before forking, a pooled container
    while it waits), with everything the kernel would set up around it: the kernel only connects
    its own callbacks (`for_kernel`), so a forked session writes to few of the pages it shares.
    False when this Python has no usable IPython."""
    global _prepared
    if _prepared is None:
        ready = Interactive(_no_publisher, _no_publisher, _limits_now())
        if ready.ensure_shell() is None:
            return False
        _prepared = ready
    return True


def for_kernel(
    publish: Publish,
    fallback_display: Callable[..., None],
    limits: tuple[Callable[[], int], Callable[[], int]],
) -> Interactive:
    """The kernel's Interactive: the prepared one, connected to the kernel, or a new one.
    `limits`: the current cell's text and display byte budgets, read when used."""
    global _prepared
    ready, _prepared = _prepared, None
    if ready is None:
        return Interactive(publish, fallback_display, limits)
    ready._publish = publish
    ready._fallback_display = fallback_display
    _limits[:] = limits
    ready.shell.display_pub.send = publish
    return ready


def _text_limit() -> int:
    return _limits[0]()  # the kernel's of the moment: see for_kernel


def _display_limit() -> int:
    return _limits[1]()


def _no_publisher(*args: Any) -> None:
    pass


def _limits_now() -> tuple[Callable[[], int], Callable[[], int]]:
    return _limits[0], _limits[1]


def _fresh_namespace() -> dict[str, Any]:
    import builtins

    return {"__name__": "__main__", "__builtins__": builtins}


class Interactive:
    """The kernel's IPython side: one per kernel, owning the namespace the cells run in."""

    def __init__(
        self,
        publish: Publish,
        fallback_display: Callable[..., None],
        limits: tuple[Callable[[], int], Callable[[], int]],
    ) -> None:
        self._publish = publish
        self._fallback_display = fallback_display
        _limits[:] = limits
        self.shell: Any = None
        self._tried = False
        self.namespace = _fresh_namespace()
        self.inputs: list[str] = [""]  # In: In[n] is cell n's source
        self.outputs: dict[int, Any] = {}  # Out: Out[n] is cell n's displayed value
        # The last inputs (the running cell's, then the three before) and the last three results.
        self._inputs_seen: tuple[str, str, str, str] = ("", "", "", "")
        self._results_seen: tuple[Any, Any, Any] = ("", "", "")
        self.namespace.update(
            In=self.inputs, Out=self.outputs, _ih=self.inputs, _oh=self.outputs,
            _i="", _ii="", _iii="", _="", __="", ___="",
        )  # fmt: skip
        self.namespace["display"] = self._display
        self.namespace["get_ipython"] = self.ensure_shell  # the shell, made when first asked
        # Once user code imports IPython, before the import returns: its `display` must find
        # the shell initialised.
        figures.when_imported("IPython", lambda _module: self.ensure_shell())

    def _display(self, *objects: Any, **options: Any) -> None:
        self._fallback_display(*objects, **options)

    def ensure_shell(self) -> Any:
        """The shell, made on first need; None without IPython."""
        if self.shell is None and not self._tried:
            self._tried = True
            shell = _make_shell(self.namespace)
            if shell is not None:
                self._adopt(shell)
        return self.shell

    def _adopt(self, shell: Any) -> None:
        self._tried = True
        self.shell = shell
        shell.display_pub.send = self._publish
        # The shell's history is off; its In/Out must be the kernel's, which it would replace.
        history = shell.history_manager
        history.input_hist_parsed = history.input_hist_raw = self.inputs
        history.output_hist = self.outputs
        self.namespace.update(In=self.inputs, Out=self.outputs, _ih=self.inputs, _oh=self.outputs)
        from IPython.display import display

        self.namespace["display"] = display
        self.namespace["get_ipython"] = get_ipython = shell.get_ipython  # one object: see %who
        hidden = ("In", "Out", "_ih", "_oh", "_i", "_ii", "_iii", "_", "__", "___", "display")
        shell.user_ns_hidden.update({name: self.namespace.get(name) for name in hidden})
        shell.user_ns_hidden["get_ipython"] = get_ipython

    def format_traceback(self, exc: BaseException) -> str | None:
        """The exception as IPython shows it (`Cell In[3], line 2`, the lines around each
        frame), the agent's own frames left out, once the kernel has its shell (a fork-server or
        pooled session from the start, a cold one once IPython is used); None otherwise, and for
        a syntax error (Python's format then: the line with a caret under the fault). The shell
        is never made here: the error may be the sandbox running out of memory or processes."""
        shell = self.shell
        if shell is None or isinstance(exc, SyntaxError):
            return None
        tb = user_traceback(exc.__traceback__)
        names = shell.compile._filename_map  # how IPython knows a file is `Cell In[N]`
        files = []
        walk = tb
        while walk is not None:
            files.append(walk.tb_frame.f_code.co_filename)
            walk = walk.tb_next
        for filename in files:
            if isinstance(filename, str) and filename.startswith("<cell-"):
                names.setdefault(filename, int(filename[6:-1]))
        # tb_offset 0: every frame left is the user's (the shell skips one of its own by default).
        lines = shell.InteractiveTB.structured_traceback(type(exc), exc, tb, tb_offset=0)
        return "\n".join(lines) + "\n"

    def transform(self, code: str) -> str:
        """`code`, which does not compile, as Python: IPython's transformations, or (without
        IPython) the common indentation removed."""
        shell = self.ensure_shell()
        if shell is None:
            return textwrap.dedent(code)
        return str(shell.transform_cell(code))

    def record_input(self, number: int, code: str) -> None:
        """The running cell's source as `In[N]` and `_iN`; `_i`, `_ii`, `_iii` are the three
        cells before it, as in IPython."""
        self.inputs.append(code)
        current, i, ii, _ = self._inputs_seen
        self._inputs_seen = (code, current, i, ii)
        ns = self.namespace
        ns["_i"] = current
        ns["_ii"] = i
        ns["_iii"] = ii
        ns[f"_i{number}"] = code

    def record_output(self, number: int, value: Any) -> None:
        """The cell's displayed value as `_`, `__`, `___`, `_N` and `Out[N]`."""
        ns = self.namespace
        if len(self.outputs) >= _OUTPUT_CACHE:
            for old in self.outputs:
                ns.pop(f"_{old}", None)
            self.outputs.clear()
        self.outputs[number] = value
        last, before, _ = self._results_seen
        self._results_seen = (value, last, before)
        ns["_"] = value
        ns["__"] = last
        ns["___"] = before
        ns[f"_{number}"] = value


def _make_shell(namespace: dict[str, Any]) -> Any:
    """An InteractiveShell over `namespace` that writes nothing to disk and prints nothing of its
    own: history off, no colours, no virtualenv warning, its profile in a private directory."""
    try:
        from IPython.core.displaypub import DisplayPublisher
        from IPython.core.interactiveshell import InteractiveShell
        from traitlets.config import Config
    except Exception:
        return None

    class Publisher(DisplayPublisher):
        send: Publish | None = None

        def publish(
            self,
            data: dict[str, Any],
            metadata: dict[str, Any] | None = None,
            source: Any = None,
            *,
            transient: Any = None,
            update: bool = False,
            **kwargs: Any,
        ) -> None:
            if self.send is not None:
                self.send(data, metadata or {})

        def clear_output(self, wait: bool = False) -> None:
            pass

    config = Config()
    config.HistoryManager.enabled = False
    config.InteractiveShell.colors = "nocolor"
    config.InteractiveShell.warn_venv = False
    config.InteractiveShell.autocall = 0
    config.InteractiveShell.display_page = True  # `obj?` help is displayed, not paged
    home = os.path.join(os.environ.get("TMPDIR") or "/tmp", f"lci-ipython-{os.getuid()}")
    try:
        with _quiet_stderr():
            # The singleton: IPython's `display` publishes only through an initialised instance.
            shell = InteractiveShell.instance(
                config=config,
                user_ns=namespace,
                ipython_dir=home,
                display_pub_class=Publisher,
            )
    except Exception:
        return None
    # `!cmd` through a pseudo-terminal by default; sandboxes have none, and the command's output
    # belongs in the cell's own stdout and stderr anyway.
    shell.system = shell.system_raw  # type: ignore[method-assign]
    ipython_formats.install(shell.display_formatter, _text_limit, _display_limit)
    return shell


class _quiet_stderr:
    """IPython may warn while it starts (a profile directory it cannot create): not the user's
    output."""

    def __enter__(self) -> None:
        self._saved = sys.stderr
        sys.stderr = open(os.devnull, "w")  # closed on exit

    def __exit__(self, *exc: Any) -> None:
        sys.stderr.close()
        sys.stderr = self._saved
