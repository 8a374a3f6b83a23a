"""A session's snapshots: its live interpreter kept frozen as a copy-on-write fork inside the same
sandbox, beside a copy of its working directory; restore makes the session that state again."""

from __future__ import annotations

from engine.errors import NotImplementedHere
from engine.models import SnapshotInfo


class SessionSnapshots:
    """Snapshot, restore, list and delete (mixed into `Session`)."""

    async def snapshot(self) -> SnapshotInfo:
        """Keep the interpreter's whole state and the working directory; returns the snapshot.
        Raises CapacityExceeded past the session's snapshot cap, SessionBusy while a cell runs."""
        raise NotImplementedHere("snapshots are not implemented yet")

    async def list_snapshots(self) -> list[SnapshotInfo]:
        """The session's snapshots, oldest first, their memory figures measured now."""
        raise NotImplementedHere("snapshots are not implemented yet")

    async def restore(self, snapshot_id: str) -> SnapshotInfo:
        """Make the session the snapshot's state again (interpreter and files); the snapshot is
        kept, so it can be restored again. Raises SnapshotNotFound."""
        raise NotImplementedHere("snapshots are not implemented yet")

    async def delete_snapshot(self, snapshot_id: str) -> None:
        """Free the snapshot's memory and disk. Raises SnapshotNotFound."""
        raise NotImplementedHere("snapshots are not implemented yet")
