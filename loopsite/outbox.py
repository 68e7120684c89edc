"""The transactional outbox: ``outbox_send`` records work in the caller's transaction; it is attempted right after
the commit, and until it succeeds, by the periodic drain (``loopsite.outbox_drain``, every minute). A request never
fails because a broker, a mail server or the cache is down, and no such work is lost.

Delivery is at least once: a handler may run twice if a process dies between running it and marking it sent, so
handlers are idempotent or harmless to repeat (a tuner cycle is claimed per week; a second email is tolerable).
"""

import logging
import time
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.module_loading import import_string

from loopsite.models import OutboxMessage

logger = logging.getLogger(__name__)

HANDLERS: dict[str, str] = {
    "tuner.cycle": "loopsite.outbox.tuner_cycle_send",
    "notify.proposals": "approvals.notifications.proposals_notify",
    "notify.manual_proposal": "approvals.notifications.proposal_manual_notify",
    "notify.rollback": "approvals.notifications.rollback_notify",
    "notify.comment": "approvals.notifications.comment_notify",
    "notify.canary": "approvals.notifications.canary_notify",
    "cache.delete": "loopsite.cache.cache_delete_strict",
    "webhook.deliver": "webhooks.tasks.webhook_delivery_send",
}
LEASE = timedelta(minutes=5)  # a claim outlives the slowest handler; a dead claimer's message is retried after it
MAX_DELAY = timedelta(hours=1)
KEEP_SENT = timedelta(days=7)
INLINE_PAUSE_SECONDS = 30.0  # after a failure, this process leaves that handler to the drain for a while

_paused_until: dict[str, float] = {}


def tuner_cycle_send(*, agent_pk: int) -> None:
    """Hand a tuner cycle to the broker (the worker runs it)."""
    from tuner.tasks import tuner_cycle_task

    tuner_cycle_task.delay(agent_pk)


def outbox_send(handler: str, **kwargs: Any) -> OutboxMessage:
    """Record ``HANDLERS[handler](**kwargs)`` to run after the current transaction commits."""
    if handler not in HANDLERS:
        raise ValueError(f"unknown outbox handler {handler!r}")
    message = OutboxMessage.objects.create(handler=handler, kwargs=kwargs)
    pk = message.pk
    transaction.on_commit(lambda: _deliver_inline(pk, handler), robust=True)
    return message


def _deliver_inline(message_id: int, handler: str) -> None:
    if _paused_until.get(handler, 0.0) > time.monotonic():
        return  # it failed here moments ago: the drain will take it
    try:
        outbox_deliver(message_id=message_id, now=timezone.now())
    except Exception:  # noqa: BLE001 - the request that made the change must not fail for it
        logger.exception("outbox.inline_failed", extra={"message_id": message_id, "handler": handler})


def _delay(attempts: int) -> timedelta:
    return min(MAX_DELAY, timedelta(seconds=30 * 2 ** min(attempts - 1, 10)))


def outbox_deliver(*, message_id: int, now: datetime) -> bool:
    """Run one pending message if no one else is running it. True when it ran and succeeded."""
    claimed = (
        OutboxMessage.objects.filter(pk=message_id, status=OutboxMessage.Status.PENDING)
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .update(claimed_until=now + LEASE)
    )
    if not claimed:
        return False
    message = OutboxMessage.objects.get(pk=message_id)
    try:
        import_string(HANDLERS[message.handler])(**message.kwargs)
    except Exception as exc:  # noqa: BLE001 - recorded and retried
        attempts = message.attempts + 1
        OutboxMessage.objects.filter(pk=message_id).update(
            attempts=attempts,
            last_error=f"{type(exc).__name__}: {exc}"[:2000],
            claimed_until=None,
            available_at=now + _delay(attempts),
        )
        _paused_until[message.handler] = time.monotonic() + INLINE_PAUSE_SECONDS
        logger.warning(
            "outbox.failed",
            extra={"message_id": message_id, "handler": message.handler, "attempts": attempts, "error": str(exc)},
        )
        return False
    OutboxMessage.objects.filter(pk=message_id).update(
        status=OutboxMessage.Status.SENT, sent_at=now, claimed_until=None, attempts=F("attempts") + 1, last_error=""
    )
    _paused_until.pop(message.handler, None)
    logger.info("outbox.sent", extra={"message_id": message_id, "handler": message.handler})
    return True


def outbox_drain(*, now: datetime, limit: int = 500) -> int:
    """Deliver the pending messages that are due, oldest first; forget those sent more than a week ago."""
    due = list(
        OutboxMessage.objects.filter(status=OutboxMessage.Status.PENDING, available_at__lte=now)
        .order_by("pk")
        .values_list("pk", flat=True)[:limit]
    )
    sent = sum(outbox_deliver(message_id=pk, now=now) for pk in due)
    OutboxMessage.objects.filter(status=OutboxMessage.Status.SENT, sent_at__lt=now - KEEP_SENT).delete()
    if due:
        logger.info("outbox.drained", extra={"due": len(due), "sent": sent})
    return sent
