"""Celery tasks: one-line adapters over the services."""

from celery import shared_task
from django.utils import timezone

from approvals import notifications, services, watchdog
from rollouts.services import canaries_pass
from thresholds.models import Agent


@shared_task(name="approvals.watchdog", soft_time_limit=600, time_limit=900)
def watchdog_task() -> list[int]:
    """Hourly: promote or abort running canaries, then roll back live changes that made the error rate
    significantly worse. Returns the versions it made live."""
    now = timezone.now()
    judged = canaries_pass(now=now)
    return [j.version.pk for j in judged if j.version is not None] + [v.pk for v in watchdog.watchdog_run(now=now)]


@shared_task(name="approvals.expire_proposals", soft_time_limit=300, time_limit=600)
def proposals_expire_task() -> int:
    return len(services.proposals_expire(now=timezone.now()))


@shared_task(name="approvals.weekly_digest", soft_time_limit=600, time_limit=900)
def digest_task() -> int:
    return sum(notifications.digest_send(agent=agent, now=timezone.now()) for agent in Agent.objects.all())
