"""Bash cells (`run_code(code, language="bash")`, or a context created with language bash), run as
bash scripts inside the sandbox, through the context's Python interpreter.

E2B runs them in a Jupyter bash kernel: one bash per context that lives as long as the context, so
the working directory, variables (exported or not) and functions carry over from one cell to the
next, and a non-zero exit status becomes the cell's error (name "", value the status, as the bash
kernel reports it). lci's sandboxes run Python, so each bash cell is a Python cell (`cell`) that
starts `bash` in the sandbox, streams its stdout and stderr as they come (separately: the bash
kernel's terminal merges them) and raises `EXIT_ERROR` with a non-zero status; `error` turns that
into E2B's error. What carries over is saved by the script's EXIT trap into a state directory
under the sandbox's temporary directory and restored by the next cell: the working directory,
variables (exported ones as the environment; bash's own, such as `RANDOM` or `PPID`, excluded) and
functions. Not kept: shell options (`set -e`), aliases, traps, background jobs' handles.

A cell interrupted (lci's time limit, or the client going away) sends SIGINT to the script's
process group, then SIGKILL (its background jobs included); state saved by the trap before that
is kept. A cell that ends by itself leaves its background jobs running.
"""

from __future__ import annotations

import re
import shlex

from engine.errors import BadParameter
from engine.models import ErrorInfo, Execution

LANGUAGE = "bash"
EXIT_ERROR = "_LciBashExit"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# Run by `bash -c SCRIPT bash STATE_DIR START_DIR`. The state is restored at the top level (a
# `declare` inside a function would make its variables local).
_SCRIPT = r"""
__lci_state=$1
if [ -f "$__lci_state/vars" ]; then
  . "$__lci_state/vars" 2>/dev/null
  cd -- "$(cat "$__lci_state/cwd" 2>/dev/null)" 2>/dev/null || cd -- "$2"
else
  cd -- "$2"
fi
. "$__lci_state/pre.sh"
trap '__lci_status=$?; . "$__lci_state/post.sh"; . "$__lci_state/save.sh"; exit $__lci_status' EXIT
set --
. "$__lci_state/cell.sh"
"""
_SAVE = r"""
{
  for __lci_n in $(compgen -v); do
    case $__lci_n in
      __lci_*|BASH|BASHOPTS|BASHPID|BASH_*|COMP_*|DIRSTACK|EPOCHREALTIME|EPOCHSECONDS|EUID) ;;
      FUNCNAME|GROUPS|HISTCMD|LINENO|OPTIND|PIPESTATUS|PPID|PWD|RANDOM|SECONDS|SHELLOPTS) ;;
      SHLVL|SRANDOM|UID|_) ;;
      *) declare -p "$__lci_n" 2>/dev/null ;;
    esac
  done
  declare -f
} > "$__lci_state/vars.new" && mv -f "$__lci_state/vars.new" "$__lci_state/vars"
printf '%s' "$PWD" > "$__lci_state/cwd"
"""

# Run in the kernel with fresh globals (nothing lands in the user's namespace); the state
# directories of the interpreter's bash contexts are kept in a module of their own.
_RUNNER = r"""
import codecs, os, selectors, signal, subprocess, sys, tempfile, types


class _LciBashExit(Exception):
    pass


def _state(key):
    store = sys.modules.setdefault("_lci_bash", types.ModuleType("_lci_bash"))
    dirs = store.__dict__.setdefault("dirs", {})
    if key not in dirs:
        dirs[key] = tempfile.mkdtemp(prefix="lci-bash-")
    return dirs[key]


def _pump(proc):
    streams = {}
    for pipe, out in ((proc.stdout, sys.stdout), (proc.stderr, sys.stderr)):
        streams[pipe.fileno()] = (out, codecs.getincrementaldecoder("utf-8")("replace"))
    selector = selectors.DefaultSelector()
    for fd in streams:
        selector.register(fd, selectors.EVENT_READ)
    # Until both pipes close, or (a background job holding them) bash has ended and they are dry.
    while selector.get_map():
        ready = selector.select(timeout=0.2)
        if not ready and proc.poll() is not None:
            break
        for key, _ in ready:
            data = os.read(key.fd, 65536)
            out, decoder = streams[key.fd]
            if not data:
                selector.unregister(key.fd)
            text = decoder.decode(data, final=not data)
            if text:
                out.write(text)
                getattr(out, "flush", lambda: None)()
    selector.close()


def _stop(proc):
    # SIGINT first, as a terminal would; then SIGKILL for what ignores it (background jobs of a
    # non-interactive bash do) or is still running.
    for signum, wait in ((signal.SIGINT, 1.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, signum)
            proc.wait(wait)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass


def run(key, start, files, script):
    state = _state(key)
    fresh = not os.path.exists(os.path.join(state, "vars"))
    for name, text in files.items():
        with open(os.path.join(state, name), "w") as handle:
            handle.write(text)
    proc = subprocess.Popen(
        ["bash", "--noprofile", "--norc", "-c", script, "bash", state, start],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(os.environ) if fresh else {},  # later cells: the saved environment only
        process_group=0,
    )
    try:
        _pump(proc)
        status = proc.wait()
    finally:
        if proc.poll() is None:
            _stop(proc)
        proc.stdout.close()
        proc.stderr.close()
    if status:
        raise _LciBashExit(str(status if status > 0 else 128 - status))
"""


def cell(code: str, key: str, start: str, envs: dict[str, str]) -> str:
    """The Python cell that runs `code` as bash in the context whose state is `key`, starting in
    `start` the first time, with `envs` set for this cell only (restored after it, as E2B does)."""
    for name in envs:
        if not _NAME.match(name):
            raise BadParameter(f"invalid environment variable {name!r}", "env_vars")
    pre = "".join(
        f"__lci_had_{k}=${{{k}+1}}; __lci_old_{k}=${{{k}-}}; export {k}={shlex.quote(v)}\n"
        for k, v in envs.items()
    )
    post = "".join(
        f'if [ -n "$__lci_had_{k}" ]; then {k}=$__lci_old_{k}; else unset {k}; fi\n' for k in envs
    )
    files = {"cell.sh": code, "pre.sh": pre, "post.sh": post, "save.sh": _SAVE}
    call = f"run({key!r}, {start!r}, {files!r}, {_SCRIPT!r})"
    return f"exec(compile({_RUNNER + call!r}, '<bash>', 'exec'), {{'__name__': '_lci_bash'}})"


def error(execution: Execution) -> ErrorInfo | None:
    """The cell's error as E2B's bash kernel reports it: a non-zero exit status is name "" and
    value the status; any other error (bash missing, interrupted) is left as it is."""
    found = execution.error
    if found is None or found.name != EXIT_ERROR:
        return found
    return found.model_copy(update={"name": "", "value": found.value, "traceback": ""})
