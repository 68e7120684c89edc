"""Celery tasks: one-line adapters over the tuner's services."""

from celery import shared_task
from django.utils import timezone

from thresholds.models import Agent
from tuner.services import tuner_cycle_run, tuner_runs_due


@shared_task(
    bind=True,
    autoretry_for=(Exception,),
    retry_backoff=60,
    max_retries=3,
    soft_time_limit=15 * 60,
    time_limit=20 * 60,
    acks_late=True,
)
def tuner_cycle_task(self: object, agent_pk: int) -> int:
    """One cycle for one agent now; a second delivery for the same cycle returns the run already made."""
    return tuner_cycle_run(agent=Agent.objects.get(pk=agent_pk), now=timezone.now()).pk


@shared_task(soft_time_limit=60, time_limit=120)
def tuner_weekly_task(agent_pk: int | None = None) -> list[int]:
    """The weekly fan-out: one cycle task per agent (or for the one agent its schedule names)."""
    pks = [agent_pk] if agent_pk is not None else tuner_runs_due(now=timezone.now())
    for pk in pks:
        tuner_cycle_task.delay(pk)
    return pks
