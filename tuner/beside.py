"""A read of the window run on a second connection, in the same snapshot, while the cycle goes on with its own work.

A cycle reads its window twice on the database: the aggregate pass (``selectors.window_scan``) and the cluster
samples (``selectors.cluster_samples``), which need the pass's totals to pick every k-th decision. The samples'
query then keeps a database core busy while this process folds the pass, replays it and bootstraps the candidates
on the other. ``read_beside`` starts such a read in a thread with a connection of its own that imports the window
transaction's snapshot (``pg_export_snapshot``, ``SET TRANSACTION SNAPSHOT``), so it sees exactly the rows the
cycle's own next statement would, and returns at once; ``Pending.result`` waits for it.

It runs the read at once, on the caller's connection, where a second connection could not see the same rows or
cannot share its snapshot: not PostgreSQL, a window transaction nested in another one (a test's: its uncommitted
rows are invisible to any other connection), or a second connection that cannot import the snapshot.
"""

import contextvars
import logging
import re
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from django.db import connections, transaction

logger = logging.getLogger(__name__)

T = TypeVar("T")

_SNAPSHOT_ID = re.compile(r"^[0-9A-F]+-[0-9A-F]+(-[0-9]+)?$")


class Pending(Generic[T]):
    """A read's result: already there, or coming from the thread ``read_beside`` started."""

    def __init__(self, thread: threading.Thread | None = None, box: dict[str, object] | None = None) -> None:
        self._thread = thread
        self._box: dict[str, object] = box if box is not None else {}

    @classmethod
    def done(cls, value: T) -> "Pending[T]":
        return cls(box={"value": value})

    @property
    def beside(self) -> bool:
        """Whether the read ran on a second connection."""
        return self._thread is not None

    def result(self) -> T:
        if self._thread is not None:
            self._thread.join()
        if "error" in self._box:
            raise self._box["error"]  # type: ignore[misc]
        return self._box["value"]  # type: ignore[return-value]


def read_beside(alias: str, read: Callable[[], T], *, settings_sql: str = "") -> Pending[T]:
    """``read()`` on a second connection to ``alias`` in the snapshot of the transaction open on it, started now and
    awaited by ``Pending.result``; or run here and now (see the module's docstring). Call it inside the outermost
    transaction on ``alias``: it returns once the thread holds the snapshot, so that transaction may then end.
    ``settings_sql`` is run first in the thread's transaction (the tuner's ``SET LOCAL`` settings)."""
    connection = connections[alias]
    if connection.vendor != "postgresql" or len(connection.atomic_blocks) != 1:
        return Pending.done(read())
    with connection.cursor() as cursor:  # not in a savepoint: a subtransaction cannot export its snapshot
        cursor.execute("SELECT pg_export_snapshot()")
        snapshot = str(cursor.fetchone()[0])
    if not _SNAPSHOT_ID.match(snapshot):
        return Pending.done(read())

    box: dict[str, object] = {}
    imported = threading.Event()

    def work() -> None:
        other = connections[alias]  # this thread's own connection
        try:
            with transaction.atomic(using=alias):
                with other.cursor() as cursor:
                    cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                    cursor.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
                    if settings_sql:
                        cursor.execute(settings_sql)
                box["imported"] = True
                imported.set()
                box["value"] = read()
        except BaseException as exc:  # handed to the caller by Pending.result
            box["error"] = exc
        finally:
            imported.set()
            other.close()

    # The caller's context goes with the read (``loopsite.replica.lagging_reads`` is a context variable).
    thread = threading.Thread(
        target=contextvars.copy_context().run, args=(work,), name="tuner-read-beside", daemon=True
    )
    thread.start()
    imported.wait()  # the snapshot can be imported only while the transaction that exported it is open
    if not box.get("imported"):  # the second connection could not take the snapshot: read here
        thread.join()
        logger.info("tuner.read_beside_unavailable", extra={"error": str(box.get("error"))[:200]})
        return Pending.done(read())
    return Pending(thread, box)
