"""A smolagents executor that runs a `CodeAgent`'s code in an lci session (`pip install lci[smolagents]`).

    from smolagents import CodeAgent
    from engine.integrations.smolagents import LciExecutor

    executor = LciExecutor("http://127.0.0.1:8000", api_key="...")
    agent = CodeAgent(tools=[], model=model, executor=executor)
    agent.run("...")
    executor.cleanup()  # or agent.cleanup(): closes the session

It follows smolagents' remote-executor interface (`RemotePythonExecutor`): tools and variables are
sent as code, `final_answer` raises an exception whose value carries the answer, and each step's
code runs in one lci session whose state persists across steps. It talks to `lci serve` over its
plain session API (`/v1/sessions`), so the server may be on another host.

Packages are not installed at run time (lci sandboxes usually have no network): authorized
imports the sandbox cannot import are reported in the agent's log, not installed.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import httpx
from smolagents.local_python_executor import CodeOutput
from smolagents.monitoring import AgentLogger, LogLevel
from smolagents.remote_executors import RemotePythonExecutor
from smolagents.utils import AgentError

__all__ = ["LciExecutor"]

# What smolagents' E2B executor reads from a result, in its order: an image first, else text.
_IMAGE_TYPES = ("image/jpeg", "image/png")
_TEXT_TYPES = ("application/json", "text/html", "text/markdown", "text/latex", "text/plain")


# Distributions whose module has another name: smolagents' send_tools asks for `pillow` when a
# tool needs PIL, which must not be reported as missing.
_MODULES = {
    "pillow": "PIL",
    "scikit-learn": "sklearn",
    "beautifulsoup4": "bs4",
    "pyyaml": "yaml",
    "opencv-python": "cv2",
    "python-dateutil": "dateutil",
}


class LciExecutor(RemotePythonExecutor):
    """Run agent code in a fresh lci session. `limits` changes the server's default limits for
    this session (e.g. `{"timeout_s": 60}`); `logger` defaults to an INFO-level AgentLogger."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        api_key: str | None = None,
        *,
        additional_imports: list[str] | None = None,
        logger: AgentLogger | None = None,
        allow_pickle: bool = False,
        limits: dict[str, Any] | None = None,
        request_timeout_s: float = 600.0,
    ) -> None:
        super().__init__(
            additional_imports or [], logger or AgentLogger(LogLevel.INFO), allow_pickle
        )
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=base_url, headers=headers, timeout=request_timeout_s)
        reply = self._http.post("/v1/sessions", json={"limits": limits} if limits else {})
        _raise_for(reply, "starting an lci session")
        self.session_id: str = reply.json()["id"]
        self.installed_packages = self.install_packages(additional_imports or [])
        self.logger.log(f"lci session {self.session_id} is running", level=LogLevel.INFO)

    def run_code_raise_errors(self, code: str) -> CodeOutput:
        reply = self._http.post(f"/v1/sessions/{self.session_id}/execute", json={"code": code})
        _raise_for(reply, "running code in lci")
        execution = reply.json()
        logs = execution.get("stdout", "")
        error = execution.get("error")
        if error:
            if error["name"] == RemotePythonExecutor.FINAL_ANSWER_EXCEPTION:
                answer = self._deserialize_final_answer(error["value"], self.allow_pickle)
                return CodeOutput(output=answer, logs=logs, is_final_answer=True)
            message = (
                f"{logs}\nExecuting code yielded an error:\n{error['name']}\n{error['value']}\n"
                f"{error.get('traceback', '')}"
            )
            raise AgentError(message, self.logger)
        result = next((o for o in execution["outputs"] if o["type"] == "result"), None)
        return CodeOutput(output=_value(result), logs=logs, is_final_answer=False)

    def install_packages(self, additional_imports: list[str]) -> list[str]:
        """Nothing is installed: say which of the names cannot be imported in the sandbox. The
        names are modules, or distributions (smolagents passes a tool's `PIL` as `pillow`)."""
        modules = sorted(
            {_MODULES.get(name.lower(), name.split(".")[0]) for name in additional_imports} - {"*"}
        )
        if modules:
            check = (
                f"import importlib.util as _u\n[m for m in {modules!r} if _u.find_spec(m) is None]"
            )
            missing = self.run_code_raise_errors(check).output
            if missing not in (None, "[]"):
                self.logger.log(
                    f"not importable in the lci sandbox (nothing is installed): {missing}",
                    level=LogLevel.INFO,
                )
        return additional_imports

    def cleanup(self) -> None:
        """Close the session and the HTTP client (safe to call twice)."""
        if self._http.is_closed:
            return
        try:
            self._http.delete(f"/v1/sessions/{self.session_id}")
        except httpx.HTTPError as exc:
            self.logger.log_error(f"closing lci session {self.session_id} failed: {exc}")
        finally:
            self._http.close()

    delete = cleanup


def _value(result: dict[str, Any] | None) -> Any:
    if result is None:
        return None
    data: dict[str, str] = result["data"]
    for mime in _IMAGE_TYPES:
        if mime in data:
            from PIL import Image  # smolagents depends on pillow

            return Image.open(io.BytesIO(base64.b64decode(data[mime])))
    for mime in _TEXT_TYPES:
        if mime in data:
            return data[mime]
    return None


def _raise_for(reply: httpx.Response, doing: str) -> None:
    if reply.is_success:
        return
    try:
        message = reply.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = reply.text
    raise RuntimeError(f"{doing} failed: HTTP {reply.status_code}: {message}")
