"""Where a sandbox finds the agent, with nothing but the Docker API: built into its image (images
that `lci image build` makes carry the agent's digest as a label), or, for any other image with
`python3`, in a volume this backend fills once with its agent, through the archive API of a
container that is created and never started, and mounts read-only at SANDBOX_AGENT."""

from __future__ import annotations

import asyncio
import contextlib

from engine.core.agent_files import agent_digest, agent_tar
from engine.core.backends.docker.api import DockerAPI
from engine.core.backends.docker.spec import LABEL_AGENT, SANDBOX_AGENT, ContainerPlan
from engine.errors import LCIError
from engine.models import Limits


class AgentSource:
    """The agent volume to mount for each image (None: the image has this agent built in)."""

    def __init__(
        self, api: DockerAPI, name: str, labels: dict[str, str], user: tuple[int, int]
    ) -> None:
        self.api = api
        self.name = name
        self.labels = labels
        self.user = user
        self._images: dict[str, str | None] = {}
        self._filled = False
        self._lock = asyncio.Lock()

    def volume(self, image_id: str) -> str | None:
        return self._images.get(image_id)

    async def prepare(self, image_id: str, image_labels: dict[str, str], limits: Limits) -> None:
        """Decide how sandboxes of `image_id` get the agent; fill the volume if it is needed
        for the first time."""
        if image_id in self._images:
            return
        if image_labels.get(LABEL_AGENT) == agent_digest():
            self._images[image_id] = None
            return
        async with self._lock:
            if not self._filled:
                await asyncio.to_thread(self._fill, image_id, limits)
                self._filled = True
        self._images[image_id] = self.name

    def _fill(self, image_id: str, limits: Limits) -> None:
        self.api.create_volume(self.name, self.labels, {})
        filler = ContainerPlan(
            image=image_id,
            limits=limits,
            workdir=self.name,
            labels=self.labels,
            name_prefix=f"lci-{self.name}",
        )
        host = {**filler.host_args(), "binds": {self.name: {"bind": SANDBOX_AGENT, "mode": "rw"}}}
        try:
            container_id = self.api.create(image_id, filler.create_args(self.user), host)
            try:
                self.api.put_archive(container_id, SANDBOX_AGENT, agent_tar())
            finally:
                self.api.remove(container_id)
        except BaseException:
            with contextlib.suppress(LCIError):
                self.api.remove_volume(self.name)
            raise
