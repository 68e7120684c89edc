"""Celery tasks of the site itself: one-line adapters."""

from celery import shared_task
from django.utils import timezone

from loopsite.outbox import outbox_drain


@shared_task(name="loopsite.outbox_drain", soft_time_limit=240, time_limit=300)
def outbox_drain_task() -> int:
    """Every minute: deliver outbox messages whose first attempt failed (broker, mail server or cache down)."""
    return outbox_drain(now=timezone.now())
