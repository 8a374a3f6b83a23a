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

from . import relay
from .channel import parse_args, setup_channel


def main(argv: list[str] | None = None) -> None:
    """Serve requests until shutdown; never returns in the kernel, nor in the relay."""
    options = parse_args(sys.argv[1:] if argv is None else argv)
    requests_fd, channel = setup_channel(options)
    relay.fork_kernel(channel, requests_fd)  # from here on, this process is the kernel
    from .kernel import serve

    serve(options, requests_fd, channel)
