"""Removing what the docker backend left on the daemon: containers, volumes and networks.

Three sweeps, from the narrowest to the widest:

* `remove_stragglers`: one backend's own leftovers after the daemon was unreachable for a while
  (removals it attempted meanwhile failed, and a daemon restart stops every container);
* `reap_orphans`: what engines that are gone left on this machine (at start-up, then periodically);
* `sweep`: everything of one backend, when it closes.

Every function blocks: call it through `asyncio.to_thread` from async code.
"""

from __future__ import annotations

import logging
from pathlib import Path

from engine.core import workdir as wd
from engine.core.backends.docker.api import DockerAPI
from engine.core.backends.docker.spec import LABEL_MACHINE, LABEL_OWNER
from engine.core.owners import owner_alive
from engine.errors import SandboxError

log = logging.getLogger(__name__)
# A volume no container mounts, or a container created and not started, is left alone this long: a
# session's volume gets its keeper right after it is made, and a container is started once made.
STRAGGLER_AGE_S = 20.0


def remove_stragglers(api: DockerAPI, mine: str) -> bool:
    """Remove the containers labelled `mine` that stopped and were not removed, or were created
    and never started, and its volumes no container mounts any more. True when nothing is left
    to look at again."""
    clean = True
    for container_id, state, age in api.not_running(mine):
        if state == "created" and age < STRAGGLER_AGE_S:
            clean = False  # perhaps starting right now
        else:
            api.remove(container_id)
    for volume, age in api.unused_volumes(mine):
        if age < STRAGGLER_AGE_S:
            clean = False  # perhaps a session's, just made: looked at again later
        else:
            api.remove_volume(volume)
    return clean


def reap_orphans(api: DockerAPI, machine: str, owner: str, state_dir: Path) -> int:
    """Remove containers, then volumes, whose owning engine process (on `machine`, other than
    `owner`) is gone; returns how many containers were removed."""

    def orphaned(labels: dict[str, str]) -> bool:
        tag = labels.get(LABEL_OWNER, "")
        return labels.get(LABEL_MACHINE) == machine and tag != owner and not owner_alive(tag)

    reaped = 0
    for container_id, labels in api.labelled(LABEL_OWNER):
        if orphaned(labels):
            api.remove(container_id)
            reaped += 1
    for network_id, labels in api.labelled_networks(LABEL_OWNER):
        if orphaned(labels):
            api.remove_network(network_id)
    for volume, labels in api.labelled_volumes(LABEL_OWNER):
        if orphaned(labels):
            try:
                api.remove_volume(volume)
            except SandboxError as exc:  # still in use: the next round retries
                log.info("could not remove the volume %s yet: %s", volume, exc)
    # Workdirs of engines from before the volumes (a host directory per backend).
    for entry in state_dir.glob("docker-*"):
        tag = entry.name.removeprefix("docker-").rpartition("-")[0]
        if tag != owner and not owner_alive(tag):
            wd.remove_dir(entry)
    return reaped


def sweep(api: DockerAPI, mine: str, network: str | None) -> None:
    """Remove every container and volume labelled `mine`, and `network` if given."""
    for container_id, _ in api.labelled(mine):
        api.remove(container_id)
    for volume, _ in api.labelled_volumes(mine):
        api.remove_volume(volume)
    if network is not None:
        api.remove_network(network)
