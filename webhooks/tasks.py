"""Celery tasks: one-line adapters over the services."""

from celery import shared_task
from django.utils import timezone

from webhooks.services import deliveries_due_send, delivery_attempt


def webhook_delivery_send(*, delivery_pk: int) -> None:
    """The outbox handler (``webhook.deliver``): hand a delivery to the worker, so no request waits on the POST."""
    webhook_deliver_task.delay(delivery_pk)


@shared_task(name="webhooks.deliver", soft_time_limit=60, time_limit=90)
def webhook_deliver_task(delivery_pk: int) -> bool:
    return delivery_attempt(delivery_pk=delivery_pk, now=timezone.now())


@shared_task(name="webhooks.deliver_due", soft_time_limit=280, time_limit=300)
def webhook_deliver_due_task() -> int:
    """Every minute: retry the deliveries whose backoff has run out (and any whose hand-off was lost)."""
    return deliveries_due_send(now=timezone.now())
