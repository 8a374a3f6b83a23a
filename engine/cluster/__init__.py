"""Sessions on a Ray cluster: each a named, detached actor on an lci node, found by any replica.

The only package that imports `ray`; the server reaches it through `ClusterSessionManager`.
"""

from engine.cluster.manager import ClusterSessionManager, connect

__all__ = ["ClusterSessionManager", "connect"]
