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

import os
import sys
import textwrap
from collections.abc import Callable
from typing import Any

from . import ipython_formats

Publish = Callable[[dict[str, Any], dict[str, Any]], None]

_OUTPUT_CACHE = 1000  # as IPython's: Out keeps at most this many results before it is cleared
_prepared: tuple[Any, dict[str, Any]] | None = None  # (shell, namespace) made ahead of a session


def prepare() -> bool:
    """Make the shell ahead of the session (a fork server before forking, a pooled container
    while it waits); the kernel adopts it. False when this Python has no usable IPython."""
    global _prepared
    if _prepared is None:
        namespace = _fresh_namespace()
        shell = _make_shell(namespace)
        if shell is None:
            return False
        _prepared = (shell, namespace)
    return True


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
        """`limits`: the current cell's text and display byte budgets, read when used."""
        self._publish = publish
        self._fallback_display = fallback_display
        self._limits = limits
        self.shell: Any = None
        self._tried = False
        prepared = _prepared
        self.namespace = prepared[1] if prepared is not None else _fresh_namespace()
        self.inputs: list[str] = [""]  # In: In[n] is cell n's source
        self.outputs: dict[int, Any] = {}  # Out: Out[n] is cell n's displayed value
        self.namespace.update(
            In=self.inputs, Out=self.outputs, _ih=self.inputs, _oh=self.outputs,
            _i="", _ii="", _iii="", _="", __="", ___="",
        )  # fmt: skip
        if prepared is not None:
            self._adopt(prepared[0])
        else:
            self.namespace["display"] = fallback_display
            self.namespace["get_ipython"] = self.ensure_shell  # the shell, made when first asked
            _watch_for_ipython(self.ensure_shell)

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
        ipython_formats.install(shell.display_formatter, *self._limits)
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

    def transform(self, code: str) -> str:
        """`code`, which does not compile, as Python: IPython's transformations, or (without
        IPython) the common indentation removed."""
        shell = self.ensure_shell()
        if shell is None:
            return textwrap.dedent(code)
        return str(shell.transform_cell(code))

    def record_input(self, number: int, code: str) -> None:
        self.inputs.append(code)
        ns = self.namespace
        ns["_iii"], ns["_ii"], ns["_i"] = ns.get("_ii", ""), ns.get("_i", ""), code
        ns[f"_i{number}"] = code

    def record_output(self, number: int, value: Any) -> None:
        """The cell's displayed value as `_`, `__`, `___`, `_N` and `Out[N]`."""
        ns = self.namespace
        if len(self.outputs) >= _OUTPUT_CACHE:
            for old in self.outputs:
                ns.pop(f"_{old}", None)
            self.outputs.clear()
        self.outputs[number] = value
        ns["___"], ns["__"], ns["_"] = ns.get("__", ""), ns.get("_", ""), value
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


def _watch_for_ipython(on_import: Callable[[], Any]) -> None:
    """Call `on_import` once user code has imported IPython, before the import returns: its
    `display` must find the shell initialised."""
    if "IPython" in sys.modules:
        on_import()
        return
    import importlib.abc
    import importlib.util

    class Hook(importlib.abc.MetaPathFinder):
        def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
            if name != "IPython":
                return None
            sys.meta_path.remove(self)
            spec = importlib.util.find_spec(name)
            if spec is None or spec.loader is None:
                return spec
            original = spec.loader.exec_module

            def exec_module(module: Any) -> None:
                original(module)
                on_import()

            spec.loader.exec_module = exec_module  # type: ignore[method-assign]
            return spec

    sys.meta_path.insert(0, Hook())
