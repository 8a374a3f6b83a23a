"""How the agent starts: the one module that knows both the relay (`relay`) and the kernel
(`kernel`), which know nothing of each other.

A fresh interpreter runs `main()` (the command is `engine.core.agent_files.bootstrap_argv`): it
forks the relay before the kernel's modules are imported, so the relay never holds them (every page
the kernel then wrote would be copied, and charged to the sandbox's memory). A fork-server sandbox
runs `main(argv)` in a process that imported the whole agent already; the kernel's import is then
a no-op.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from . import relay
from .channel import parse_args, setup_channel


def main(
    argv: list[str] | None = None, before_serving: Callable[[int, int], None] | None = None
) -> None:
    """Serve requests until shutdown; never returns in the kernel, nor in the relay.
    `before_serving(requests_fd, frames_fd)` runs in the kernel once the relay is forked, before
    the kernel reads a request or says hello (a staged sandbox waits for its session there)."""
    options = parse_args(sys.argv[1:] if argv is None else argv)
    requests_fd, channel = setup_channel(options)
    relay.fork_kernel(channel, requests_fd)  # from here on, this process is the kernel
    if before_serving is not None:
        before_serving(requests_fd, channel.out_fd)
    from .kernel import serve

    serve(options, requests_fd, channel)
