"""Files the code wrote during one Responses call, cited on the answer as OpenAI does:
`container_file_citation` annotations naming the container, the file's `cfile_` id and its name,
downloadable through `/v1/containers/{id}/files/{file_id}/content`.

The container's files are noted before its first code block runs; at the end, a file that is new or
changed (size or modification time) was written by the call. A citation spans the first place the
answer mentions the file (`sandbox:/path`, the path, or the name); a file the answer does not
mention is cited at the end of the text, with an empty span.
"""

from __future__ import annotations

import logging
from typing import Any

from engine.errors import LCIError
from engine.server.openai.containers.registry import ContainerFile, ContainerRegistry

log = logging.getLogger(__name__)

MAX_CITED = 50  # a call that writes thousands of files gets the first ones cited


class CallFiles:
    def __init__(self, registry: ContainerRegistry) -> None:
        self.registry = registry
        self.container_id: str | None = None
        self._before: dict[str, tuple[int, float]] = {}

    async def note(self, container_id: str) -> None:
        """Remember the container's files before the call's first code block runs in it."""
        if self.container_id == container_id:
            return
        self.container_id = container_id
        try:
            files = await self.registry.files(self.registry.get(container_id))
        except LCIError as exc:  # citations are a courtesy: the code runs all the same
            log.info("not citing files of container %s: %s", container_id, exc.message)
            self.container_id = None
            return
        self._before = {f.path: (f.bytes, f.modified_at) for f in files}

    async def annotations(self, text: str) -> list[dict[str, Any]]:
        """Citations of the files written since `note`, for an answer reading `text`."""
        if self.container_id is None:
            return []
        try:
            container = self.registry.get(self.container_id)
            files = await self.registry.files(container)
        except LCIError as exc:  # the container went away: nothing left to cite
            log.info("no citations for container %s: %s", self.container_id, exc.message)
            return []
        written = [f for f in files if self._written(f)][:MAX_CITED]
        return [_citation(container.id, container.workdir, f, text) for f in written]

    def _written(self, item: ContainerFile) -> bool:
        if any(part.startswith(".") for part in item.path.split("/")):
            return False  # caches and settings tools leave behind, not results
        return self._before.get(item.path) != (item.bytes, item.modified_at)


def _citation(container_id: str, workdir: str, item: ContainerFile, text: str) -> dict[str, Any]:
    name = item.path.rsplit("/", 1)[-1]
    path = f"{workdir.rstrip('/')}/{item.path}"
    start, end = len(text), len(text)
    for mention in (f"sandbox:{path}", path, item.path, name):
        found = text.find(mention)
        if found >= 0:
            start, end = found, found + len(mention)
            break
    return {
        "type": "container_file_citation",
        "container_id": container_id,
        "file_id": item.id,
        "filename": name,
        "start_index": start,
        "end_index": end,
    }
