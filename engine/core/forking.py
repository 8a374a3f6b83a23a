"""Forking a live session into new ones: each in its own sandbox (own uid, cgroup or container,
workdir), started like any new session and counted against the same caps and quotas, then given
the source's working directory and what of its namespace can be pickled (the agent's
`transfer`). A process cannot cross into another isolation domain, so objects tied to one (open
files, sockets, generators, threads) are reported per name instead of copied; a snapshot restored
in place keeps them all.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from engine.core.session import Session
from engine.errors import BadParameter
from engine.models import ForkResult, SessionSpec

MAX_FORKS = 16  # per request

Create = Callable[[SessionSpec, str | None], Awaitable[Session]]
Close = Callable[[str], Awaitable[None]]


async def fork_session(
    source: Session,
    spec: SessionSpec,
    *,
    n: int,
    snapshot_id: str | None,
    owner: str | None,
    create: Create,
    close: Close,
) -> list[ForkResult]:
    """`n` new sessions from `source` (its live state, or snapshot `snapshot_id`); all or none:
    when one cannot be made (a cap, a quota, a failed start), those made are closed again."""
    if not 1 <= n <= MAX_FORKS:
        raise BadParameter(f"n must be between 1 and {MAX_FORKS}", param="n")
    bundle, report = await source.export_state(snapshot_id)
    made: list[Session] = []

    async def one() -> ForkResult:
        session = await create(spec, owner)
        made.append(session)
        imported = await session.import_state(bundle)
        not_kept = {**report.get("not_kept", {}), **imported.get("not_kept", {})}
        return ForkResult(
            session=session.info(), kept=sorted(imported.get("kept", [])), not_kept=not_kept
        )

    try:
        # A task group cancels the other starts as soon as one fails: none outlives the call.
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one()) for _ in range(n)]
    except BaseException as exc:
        for session in made:
            with contextlib.suppress(Exception):
                await close(session.id)
        if isinstance(exc, BaseExceptionGroup):
            raise exc.exceptions[0] from None  # the first failure, as a single start would raise
        raise
    return [task.result() for task in tasks]
