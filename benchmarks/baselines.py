"""What a user would otherwise pick, driven the same way lci is measured: a bare persistent pipe
worker (the floor), a jupyter_client + ipykernel kernel, a fresh `python -c` per snippet, and
`docker run` per snippet."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import psutil

# The least a persistent code-execution worker does: a JSON request with the code over a pipe, run in a
# kept namespace with stdout captured, a JSON answer with the output and a final expression's value.
_PIPE_WORKER = """
import io, json, sys, contextlib
namespace = {}
read, write = sys.stdin.buffer.readline, sys.stdout.buffer.write
while line := read():
    code = json.loads(line)["code"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            value = repr(eval(compile(code, "<cell>", "eval"), namespace))
        except SyntaxError:
            exec(compile(code, "<cell>", "exec"), namespace)
            value = None
    write(json.dumps({"stdout": out.getvalue(), "value": value}).encode() + b"\\n")
    sys.stdout.flush()
"""


class PipeWorker:
    def __init__(self, python: str = sys.executable) -> None:
        self.process = subprocess.Popen(
            [python, "-I", "-c", _PIPE_WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self._stdin, self._stdout = self.process.stdin, self.process.stdout

    def run(self, code: str) -> dict[str, Any]:
        self._stdin.write(json.dumps({"code": code}).encode() + b"\n")
        self._stdin.flush()
        answer: dict[str, Any] = json.loads(self._stdout.readline())
        return answer

    def round_trip(self, code: str = "1+1") -> float:
        started = time.perf_counter()
        self.run(code)
        return time.perf_counter() - started

    def close(self) -> None:
        self._stdin.close()
        self.process.wait()


class JupyterKernel:
    """An ipykernel started and driven through jupyter_client, the usual local code interpreter."""

    def __init__(self) -> None:
        from jupyter_client.manager import KernelManager

        self.manager = KernelManager(kernel_name="python3")
        self.manager.start_kernel(extra_arguments=["--HistoryManager.enabled=False"])
        self.client = self.manager.blocking_client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)

    def run(self, code: str) -> list[dict[str, Any]]:
        """Execute and collect iopub output until the kernel is idle again."""
        msg_id = self.client.execute(code, store_history=False)
        outputs: list[dict[str, Any]] = []
        while True:
            message = self.client.get_iopub_msg(timeout=60)
            if message["parent_header"].get("msg_id") != msg_id:
                continue
            kind = message["msg_type"]
            if kind == "status" and message["content"]["execution_state"] == "idle":
                return outputs
            if kind in ("stream", "execute_result", "display_data", "error"):
                outputs.append(message["content"])

    def round_trip(self, code: str = "1+1") -> float:
        started = time.perf_counter()
        self.run(code)
        return time.perf_counter() - started

    def memory(self) -> dict[str, float]:
        pid = self.manager.provisioner.pid if self.manager.provisioner else None  # type: ignore[attr-defined]
        return process_memory([psutil.Process(pid)] if pid else [])

    def close(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)


def jupyter_available() -> bool:
    try:
        import ipykernel  # noqa: F401
        import jupyter_client  # noqa: F401
    except ImportError:
        return False
    return True


def fresh_python(code: str, python: str = sys.executable) -> float:
    """A new interpreter per snippet: no state, all start-up."""
    started = time.perf_counter()
    subprocess.run([python, "-I", "-c", code], check=True, capture_output=True)
    return time.perf_counter() - started


def docker_run(image: str, code: str) -> float:
    """A new container per snippet."""
    started = time.perf_counter()
    subprocess.run(
        ["docker", "run", "--rm", "--network", "none", image, "python3", "-c", code],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def process_memory(processes: list[psutil.Process]) -> dict[str, float]:
    uss = rss = 0
    for process in processes:
        try:
            info = process.memory_full_info()
        except psutil.Error:
            continue
        uss, rss = uss + info.uss, rss + info.rss
    return {"uss_mib": uss / (1 << 20), "rss_mib": rss / (1 << 20), "processes": len(processes)}
