"""The subprocess backend's scripts that run outside the engine's process: the zygote (the fork
server) and the launcher that builds each sandbox, with the helpers the launcher loads from this
folder by path (rootfs, caps, netns, seccomp).

They run as `python -I` scripts, where nothing of `engine` is importable, so every module here uses
the standard library only (and the staged agent, `lci_agent`, once the sandbox is built); a test
checks it for each file in this folder. The host never imports them: it starts them by path (see
`forkserver`).
"""
