"""The embedding API: the async core, and one generic adapter that makes it usable from sync code.

Async code uses `SessionManager` directly. Sync code wraps it once:

    from engine import SessionManager, blocking

    with blocking(SessionManager()) as manager:
        session = manager.create()
        print(session.execute("6 * 7").result_text)   # 42

`blocking` runs the event loop in a background thread and forwards every coroutine method through it,
so there is one set of classes, not sync twins of each.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from types import TracebackType
from typing import Any, Generic, TypeVar

from anyio.from_thread import BlockingPortal, start_blocking_portal

from engine.core.manager import SessionManager
from engine.core.session import Session

T = TypeVar("T")
_WRAPPED = (SessionManager, Session)


class Blocking(Generic[T]):
    """A sync view of an async object: coroutine methods become blocking calls; results that are
    themselves engine objects come back wrapped too."""

    def __init__(self, target: T, portal: BlockingPortal) -> None:
        self._target = target
        self._portal = portal

    @property
    def target(self) -> T:
        return self._target

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        if not inspect.iscoroutinefunction(attribute):
            return self._wrap(attribute)

        @functools.wraps(attribute)
        def call(*args: Any, **kwargs: Any) -> Any:
            return self._wrap(self._portal.call(functools.partial(attribute, *args, **kwargs)))

        return call

    def _wrap(self, value: Any) -> Any:
        if isinstance(value, _WRAPPED):
            return Blocking(value, self._portal)
        if isinstance(value, list) and value and isinstance(value[0], _WRAPPED):
            return [Blocking(v, self._portal) for v in value]
        if inspect.ismethod(value) and not inspect.iscoroutinefunction(value):

            @functools.wraps(value)
            def plain(*args: Any, **kwargs: Any) -> Any:
                return self._wrap(value(*args, **kwargs))

            return plain
        return value


class BlockingManager(Blocking[SessionManager]):
    """`with blocking(SessionManager()) as manager:` closes every session on exit."""

    def __init__(self, manager: SessionManager) -> None:
        self._stack = contextlib.ExitStack()
        portal = self._stack.enter_context(start_blocking_portal("asyncio"))
        super().__init__(manager, portal)

    def __enter__(self) -> BlockingManager:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        try:
            self._portal.call(self._target.close_all)
        finally:
            self._stack.close()


def blocking(manager: SessionManager) -> BlockingManager:
    return BlockingManager(manager)
