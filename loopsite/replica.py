"""Reads that may lag: the scope in which the database router (``loopsite.db_router``) may send reads to the
streaming replica (``DATABASE_REPLICA_URL``).

Outside the scope every read goes to the primary, so whoever has just written reads what they wrote. Inside it,
reads go to the replica when one is configured, writes still go to the primary. The scope is opened at the entry
points whose figures may be seconds old without anyone being misled: the dashboard, the weekly metrics API, the
exports (audit CSV, evaluation set) and the window reads of a tuner cycle.

The scope is a ``ContextVar``: it holds for the code running in this thread (or asyncio task) until the block
ends, and a thread started inside it does not inherit it.
"""

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

T = TypeVar("T")

_lagging: ContextVar[bool] = ContextVar("loopsite_lagging_reads", default=False)


def reads_may_lag() -> bool:
    """True inside ``lagging_reads()``."""
    return _lagging.get()


@contextmanager
def lagging_reads() -> Iterator[None]:
    """Reads inside the block may come from the replica. Also a decorator: ``@lagging_reads()``."""
    token = _lagging.set(True)
    try:
        yield
    finally:
        _lagging.reset(token)


def lagging_iteration(items: Iterable[T]) -> Iterator[T]:
    """``items`` drawn one by one inside the scope, and the scope closed between them.

    For a streamed response: its rows are read while the server iterates it, after the view has returned, so a
    scope opened in the view would be over by then; one held open across ``yield`` would leak into whatever
    the server runs between chunks."""
    iterator = iter(items)
    while True:
        with lagging_reads():
            try:
                item = next(iterator)
            except StopIteration:
                return
        yield item
