"""A running cycle's heartbeat, and when a run counts as abandoned.

The worker that wins a cycle's claim writes ``TunerRun.heartbeat_at`` every ``TUNER_HEARTBEAT_SECONDS`` from a
small daemon thread, on a database connection of its own, while it computes. A ``running`` run whose heartbeat is
``HEARTBEATS_BEFORE_STALE`` beats old (or that has none and started that long ago) belongs to a worker that died:
the next claim takes it over (``tuner.services._claim``), and a new request for the cycle sends it again
(``tuner.services.tuner_run_request``).

The thread says the process is alive, not that the computation moves; so it stops beating once the run has lasted
``TUNER_TIME_LIMIT``, by when a healthy cycle has finished or been killed by its time limit.
"""

import logging
import threading
import time
from datetime import datetime, timedelta
from types import TracebackType

from django.conf import settings
from django.db import connection
from django.db.models import Q
from django.utils import timezone

from tuner.models import TunerRun

logger = logging.getLogger(__name__)

HEARTBEATS_BEFORE_STALE = 3


def heartbeat_interval() -> timedelta:
    return timedelta(seconds=float(settings.TUNER_HEARTBEAT_SECONDS))


def stale_after() -> timedelta:
    """How long a running run may go without a heartbeat before it is taken over."""
    return HEARTBEATS_BEFORE_STALE * heartbeat_interval()


def stale_runs(now: datetime) -> Q:
    """Running runs whose worker stopped heartbeating (rows without a heartbeat: by their start)."""
    cutoff = now - stale_after()
    return Q(status=TunerRun.Status.RUNNING) & (
        Q(heartbeat_at__lt=cutoff)
        | Q(heartbeat_at__isnull=True, started_at__lt=cutoff)
        | Q(heartbeat_at__isnull=True, started_at__isnull=True)
    )


class Heartbeat:
    """``with Heartbeat(run):`` beats for ``run`` (as claimed: its ``started_at``) until the block ends.

    Inside a transaction nothing is beaten: the claim is not committed, so no other worker sees the run (and the
    thread's own connection would wait on the row the transaction holds)."""

    def __init__(self, run: TunerRun) -> None:
        self.run_pk = run.pk
        self.started_at = run.started_at
        self.interval = float(settings.TUNER_HEARTBEAT_SECONDS)
        self.limit = float(settings.TUNER_TIME_LIMIT)
        self.beats = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "Heartbeat":
        if not connection.in_atomic_block:
            self._thread = threading.Thread(target=self._run, name=f"tuner-heartbeat-{self.run_pk}", daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            # A beat stuck on the database must not hold the cycle up; it writes nothing once the run is not ours.
            self._thread.join(timeout=10)
            self._thread = None

    def beat(self) -> bool:
        """One heartbeat; False when the run is no longer this worker's (done, failed or taken over)."""
        held = TunerRun.objects.filter(
            pk=self.run_pk, status=TunerRun.Status.RUNNING, started_at=self.started_at
        ).update(heartbeat_at=timezone.now())
        return bool(held)

    def _run(self) -> None:
        deadline = time.monotonic() + self.limit
        try:
            while not self._stop.wait(self.interval):
                if time.monotonic() >= deadline:
                    logger.warning("tuner.heartbeat_stopped", extra={"run_id": self.run_pk, "reason": "time limit"})
                    return
                try:
                    held = self.beat()
                except Exception as exc:  # noqa: BLE001 - a missed beat must not fail the cycle; the next one retries
                    logger.warning("tuner.heartbeat_failed", extra={"run_id": self.run_pk, "error": str(exc)})
                    connection.close()
                    continue
                if not held:
                    logger.warning("tuner.heartbeat_stopped", extra={"run_id": self.run_pk, "reason": "run lost"})
                    return
                self.beats += 1
        finally:
            connection.close()
