"""The syscall filter, proven by the calls themselves on both backends: the refused surface fails
with EPERM (an exception, not a dead sandbox), the sandbox's own PID 1 cannot be traced, and
everything a data-science session needs still works under the filter."""

from __future__ import annotations

import ast

from engine.core.session import Session
from engine.core.syscalls import DENIED
from tests.conftest import skip_on_gvisor

NO_HOST_FILTER = (
    "runsc does not load lci's seccomp profile (with --oci-seccomp no session starts on runsc "
    "20221219: 'can't start new thread'); gVisor's own kernel answers these calls"
)

# Raw syscalls through ctypes, numbered for the machine the sandbox runs on.
CALL = (
    "import ctypes, os, platform\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "column = 0 if platform.machine() == 'x86_64' else 1\n"
    f"NUMBERS = {DENIED!r}\n"
    "def call(name, *args):\n"
    "    ctypes.set_errno(0)\n"
    "    result = libc.syscall(NUMBERS[name][column], *args)\n"
    "    return result, os.strerror(ctypes.get_errno()) if result < 0 else ''\n"
)
EPERM = "Operation not permitted"


async def test_the_kernels_rare_surface_is_refused(session: Session) -> None:
    skip_on_gvisor(session, NO_HOST_FILTER)
    assert session.info().isolation.syscall_filter
    code = CALL + (
        "buf = ctypes.create_string_buffer(256)\n"
        "{name: call(name, *args)[1] for name, args in [\n"
        "    ('io_uring_setup', (8, buf)),\n"
        "    ('keyctl', (0, -4, 0)),\n"  # KEYCTL_GET_KEYRING_ID of the user keyring
        "    ('add_key', (b'user', b'lci-test', b'secret', 6, -4)),\n"
        "    ('request_key', (b'user', b'lci-test', None, 0)),\n"
        "    ('bpf', (0, None, 0)),\n"
        "    ('userfaultfd', (0,)),\n"
        "    ('perf_event_open', (buf, 0, -1, -1, 0)),\n"
        "    ('unshare', (0x10000000,)),\n"
        "    ('mount', (b'none', b'/tmp', b'tmpfs', 0, None)),\n"
        "]}"
    )
    result = await session.execute(code)
    assert result.result_text is not None, result
    refused = ast.literal_eval(result.result_text)
    assert refused == dict.fromkeys(refused, EPERM), refused


async def test_the_local_descriptor_table_cannot_be_touched(session: Session) -> None:
    """modify_ldt, which Docker's default profile refuses, on x86-64 (aarch64 has no such call):
    called by number, so the test does not depend on the table it checks."""
    code = (
        "import ctypes, os, platform\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "buf = ctypes.create_string_buffer(64)\n"
        "ctypes.set_errno(0)\n"
        "results = [libc.syscall(154, func, buf, 16) for func in (0, 1, 0x11)]\n"
        "platform.machine(), results, os.strerror(ctypes.get_errno())"
    )
    result = await session.execute(code)
    assert result.result_text is not None, result
    machine, results, error = ast.literal_eval(result.result_text)
    if machine != "x86_64":
        return
    assert results == [-1, -1, -1] and error == EPERM, result.result_text


async def test_pid_1_cannot_be_traced(session: Session) -> None:
    skip_on_gvisor(session, NO_HOST_FILTER + "; its ptrace is its own, inside the sandbox")
    code = CALL + "call('ptrace', 16, 1, 0, 0), call('ptrace', 0, 0, 0, 0)"  # ATTACH, TRACEME
    result = await session.execute(code)
    assert result.result_text == f"((-1, '{EPERM}'), (-1, '{EPERM}'))", result


async def test_threads_subprocesses_and_libraries_work_under_the_filter(session: Session) -> None:
    code = (
        "import threading, subprocess, multiprocessing, os\n"
        "import numpy, pandas, matplotlib.pyplot as plt\n"
        "box = []\n"
        "t = threading.Thread(target=lambda: box.append(numpy.arange(10).sum()))\n"
        "t.start(); t.join()\n"
        "out = subprocess.run(['sh', '-c', 'echo $((6*7))'], capture_output=True, text=True).stdout\n"
        "with multiprocessing.get_context('fork').Pool(2) as pool:\n"
        "    squares = pool.map(abs, [-1, -2])\n"
        "plt.plot([1, 2, 3]); plt.show()\n"
        "(int(box[0]), out.strip(), squares, int(pandas.Series([1, 2]).sum()))"
    )
    result = await session.execute(code, timeout_s=20)
    assert result.result_text == "(45, '42', [1, 2], 3)", result
    assert len(result.displays) == 1
