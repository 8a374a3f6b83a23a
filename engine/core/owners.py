"""Which engine owns a sandbox, workdir or cgroup, and whether that engine still runs.

An engine tags what it creates with its owner tag; the reapers of both backends remove what belongs
to tags whose engine is gone."""

from __future__ import annotations

import os

import psutil


def owner_tag() -> str:
    """This engine process's tag: its pid and start time, so a reused pid is not mistaken for it."""
    return f"{os.getpid()}.{int(psutil.Process().create_time())}"


def owner_alive(tag: str) -> bool:
    pid_text, _, started = tag.partition(".")
    try:
        return int(psutil.Process(int(pid_text)).create_time()) == int(started)
    except (ValueError, psutil.Error):
        return False
