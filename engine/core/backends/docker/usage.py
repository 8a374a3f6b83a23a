"""What a container uses, from one sample of the Docker API's stats (cgroup v1 or v2 daemons), and
the session's workdir use from its files."""

from __future__ import annotations

import time
from typing import Any

from engine.models import FileInfo, SessionUsage


def from_stats(stats: dict[str, Any], files: list[FileInfo] | None) -> SessionUsage:
    """`stats`: the daemon's answer for the session's container ({} when none runs); `files`: the
    workdir's files (None when they could not be listed)."""
    cpu = _get(stats, "cpu_stats", "cpu_usage", "total_usage")  # nanoseconds
    memory = _get(stats, "memory_stats", "usage")
    peak = _get(stats, "memory_stats", "max_usage")  # v1 only; the session keeps its own peak
    networks = stats.get("networks") or {}
    rx = sum(int(n.get("rx_bytes", 0)) for n in networks.values()) if networks else None
    tx = sum(int(n.get("tx_bytes", 0)) for n in networks.values()) if networks else None
    return SessionUsage(
        cpu_s=round(cpu / 1e9, 3) if cpu is not None else None,
        memory_bytes=memory,
        memory_peak_bytes=peak if peak is not None else memory,
        disk_bytes=sum(f.size for f in files) if files is not None else None,
        net_rx_bytes=rx,
        net_tx_bytes=tx,
        measured_at=time.time(),
    )


def _get(data: dict[str, Any], *keys: str) -> int | None:
    value: Any = data
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
