"""Celery tasks: one-line adapters over the tuner's services."""

from typing import Any

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from thresholds.models import Agent
from tuner.heartbeat import heartbeat_interval, stale_after
from tuner.models import TunerRun
from tuner.services import tuner_cycle_run, tuner_runs_due


@shared_task(
    bind=True,
    autoretry_for=(Exception,),
    retry_backoff=60,
    max_retries=3,
    # TUNER_TIME_LIMIT is also the Redis broker's visibility timeout (loopsite/settings.py).
    soft_time_limit=settings.TUNER_SOFT_TIME_LIMIT,
    time_limit=settings.TUNER_TIME_LIMIT,
    # Acknowledged when done: a worker that dies mid-cycle leaves the message to be delivered again (at once when a
    # pool process dies, after the visibility timeout when the whole worker does).
    acks_late=True,
    reject_on_worker_lost=True,
)
def tuner_cycle_task(self: Any, agent_pk: int) -> int:
    """One cycle for one agent now; a second delivery for the same cycle returns the run already made."""
    run = tuner_cycle_run(agent=Agent.objects.get(pk=agent_pk), now=timezone.now())
    if run.status == TunerRun.Status.RUNNING and not self.request.is_eager:
        # Another worker holds the cycle and its heartbeat is fresh: alive, or just dead (this may be the redelivery
        # of its own message). Look again once a dead worker's heartbeat would be stale; a live one will be done.
        raise self.retry(
            countdown=(stale_after() + heartbeat_interval()).total_seconds(), max_retries=self.request.retries + 1
        )
    return run.pk


@shared_task(soft_time_limit=60, time_limit=120)
def tuner_weekly_task(agent_pk: int | None = None) -> list[int]:
    """The weekly fan-out: one cycle task per agent (or for the one agent its schedule names)."""
    pks = [agent_pk] if agent_pk is not None else tuner_runs_due(now=timezone.now())
    for pk in pks:
        tuner_cycle_task.delay(pk)
    return pks
