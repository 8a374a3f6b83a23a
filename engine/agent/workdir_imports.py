"""Modules a notebook writes into its working directory are importable in its next cell."""

from __future__ import annotations

import sys


class WorkdirFinders:
    """Modules written since the last cell are importable: before each cell, the import finders
    of the working directory and of the packages under it drop the directory listings they
    cached (which they refresh only on an mtime change, too coarse for a file written within the
    same tick). `importlib.invalidate_caches()` would do it for every finder, which once the data
    stack is imported costs as much as a whole `1+1` round trip; the workdir's entries are looked
    up again only when the cache of finders changed size."""

    def __init__(self, workdir: str) -> None:
        self.workdir = workdir
        self._seen_size = -1
        self._paths: list[str] = []

    def forget_listings(self) -> None:
        cache = sys.path_importer_cache
        if len(cache) != self._seen_size:
            self._paths = [path for path in cache if path.startswith(self.workdir)]
            self._seen_size = len(cache)
        for path in self._paths:
            finder = cache.get(path)
            if finder is None and path in cache:  # a directory missing when first looked at
                del cache[path]
                self._seen_size = -1
            elif finder is not None and hasattr(finder, "invalidate_caches"):
                finder.invalidate_caches()
