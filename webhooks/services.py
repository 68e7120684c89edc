"""Webhook deliveries: made in the transaction of the change they announce, sent after it commits by the worker.

``webhooks_emit`` is called by ``approvals.audit.audit_record`` for every audit row, so every loop event a webhook
can hear is announced by the one function that records it. Each matching webhook (global, or the agent's) gets a
``WebhookDelivery`` row and an outbox message; after the commit the outbox hands the delivery to the Celery task,
which makes one attempt. Failed attempts wait on the row (``next_attempt_at``, exponential backoff) for the
every-minute due pass, so retries survive a worker restart. A delivery is claimed by a conditional update before
each attempt, and a delivered one is never sent again by the worker.
"""

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.urls import reverse

from approvals.models import AuditEvent
from loopsite.outbox import outbox_send
from thresholds.metrics import WeeklyMetrics
from thresholds.models import Agent
from webhooks import events as ev
from webhooks.models import Webhook, WebhookDelivery
from webhooks.sending import body_render, headers_for, post

logger = logging.getLogger(__name__)

OUTBOX_HANDLER = "webhook.deliver"
FIRST_RETRY_SECONDS = 30
MAX_RETRY_DELAY = timedelta(hours=1)
HISTORY_KEPT = 20
DUE_PASS_LIMIT = 50
_RATES = {
    "dismissalRate": "dismissal_rate",
    "escalationRate": "escalation_rate",
    "responseRate": "response_rate",
    "acceptanceRate": "acceptance_rate",
}
_VERDICTS = {"watch.good": "good", "watch.marked_good": "good", "watch.inconclusive": "inconclusive"}


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _link(name: str, *args: Any, query: str = "") -> str:
    return f"{settings.SITE_URL}{reverse(name, args=args)}{('?' + query) if query else ''}"


def retry_delay(attempts: int) -> timedelta:
    """After the n-th failed attempt: 30 s, 1 min, 2 min, 4 min ... at most an hour."""
    return min(MAX_RETRY_DELAY, timedelta(seconds=FIRST_RETRY_SECONDS * 2 ** min(attempts - 1, 12)))


def _due(now: datetime) -> Q:
    return Q(status=WebhookDelivery.Status.PENDING) & (Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))


def _subscribers(*, agent: Agent | None, event: str) -> list[Webhook]:
    scope = Q(agent__isnull=True) | Q(agent_id=agent.pk) if agent is not None else Q(agent__isnull=True)
    return [w for w in Webhook.objects.filter(scope, active=True).order_by("pk") if event in (w.events or [])]


def _deliveries_create(*, webhooks: list[Webhook], event: str, payload: dict[str, Any]) -> list[WebhookDelivery]:
    """One delivery per webhook, each with an id of its own, sent after the current transaction commits."""
    made = []
    with transaction.atomic():
        for webhook in webhooks:
            delivery_id = uuid.uuid4()
            delivery = WebhookDelivery.objects.create(
                webhook=webhook, event=event, delivery_id=delivery_id, payload={"id": str(delivery_id), **payload}
            )
            outbox_send(OUTBOX_HANDLER, delivery_pk=delivery.pk)
            made.append(delivery)
    return made


def _audit_url(event: AuditEvent) -> str:
    agent_id = event.agent.agent_id
    if event.kind.startswith("proposal.") and event.proposal_id is not None:
        return _link("proposal-detail", event.proposal_id)
    if event.kind.startswith("watch.") and event.config_version is not None:
        return _link("version-watch", agent_id, event.config_version.number)
    if event.kind.startswith("config."):
        return _link("dashboard-agent", agent_id)
    if event.kind.startswith("agent."):
        return _link("config-lock", agent_id)
    return _link("audit-trail", query=f"agent={agent_id}")


def webhooks_emit(*, event: AuditEvent) -> list[WebhookDelivery]:
    """Deliveries of an audit row to the webhooks that want it. Call in the transaction that wrote the row."""
    name = ev.event_for_kind(str(event.kind))
    if name is None:
        return []
    agent = event.agent
    webhooks = _subscribers(agent=agent, event=name)
    if not webhooks:
        return []
    version = event.config_version.number if event.config_version is not None else None
    data: dict[str, Any] = {
        "kind": str(event.kind),
        "auditEventId": event.pk,
        "thresholdName": event.threshold_name or None,
        "before": event.before,
        "after": event.after,
        "proposalId": event.proposal_id,
        "configVersion": version,
        "actor": event.actor_label,
        "message": event.message,
        "detail": event.detail or {},
    }
    if name == ev.PROPOSAL_DECIDED:
        data["decision"] = str(event.kind).split(".", 1)[1]
        data["partial"] = event.kind == AuditEvent.Kind.PROPOSAL_APPROVAL_RECORDED
    if name == ev.WATCHDOG_VERDICT:
        data["verdict"] = _VERDICTS.get(str(event.kind), "rolled_back")
    summary = ev.summary_text(
        agent_id=agent.agent_id,
        kind=str(event.kind),
        who=event.actor_label,
        threshold_name=event.threshold_name,
        before=event.before,
        after=event.after,
        version=version,
        message=event.message,
    )
    payload = {
        "event": name,
        "occurredAt": _iso(event.at),
        "agentId": agent.agent_id,
        "summary": summary,
        "url": _audit_url(event),
        "data": data,
    }
    return _deliveries_create(webhooks=webhooks, event=name, payload=payload)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def webhooks_digest_emit(
    *, agent: Agent, week: WeeklyMetrics, week_before: WeeklyMetrics, pending: int, now: datetime
) -> list[WebhookDelivery]:
    """The weekly digest's four rates (last full ISO week beside the week before), as a ``digest.weekly`` event."""
    webhooks = _subscribers(agent=agent, event=ev.DIGEST_WEEKLY)
    if not webhooks:
        return []
    rates = {
        key: {"week": getattr(week, attr), "weekBefore": getattr(week_before, attr)} for key, attr in _RATES.items()
    }
    said = ", ".join(
        f"{key.removesuffix('Rate')} {_pct(getattr(week, attr))} (week before {_pct(getattr(week_before, attr))})"
        for key, attr in _RATES.items()
    )
    summary = (
        f"{agent.agent_id}: weekly digest, week of {week.week_start:%Y-%m-%d}: {said}; "
        f"{pending} proposal{'s' if pending != 1 else ''} pending, {week.rollbacks} rollback"
        f"{'s' if week.rollbacks != 1 else ''}."
    )
    payload = {
        "event": ev.DIGEST_WEEKLY,
        "occurredAt": _iso(now),
        "agentId": agent.agent_id,
        "summary": summary,
        "url": _link("dashboard-agent", agent.agent_id),
        "data": {
            "kind": ev.DIGEST_WEEKLY,
            "weekStart": week.week_start.isoformat(),
            "rates": rates,
            "decisions": week.decisions,
            "queued": week.queued,
            "responses": week.responses,
            "accepted": week.accepted,
            "decided": week.decided,
            "rollbacks": week.rollbacks,
            "pendingProposals": pending,
        },
    }
    return _deliveries_create(webhooks=webhooks, event=ev.DIGEST_WEEKLY, payload=payload)


def webhook_test_send(*, webhook: Webhook, actor_label: str, now: datetime) -> WebhookDelivery:
    """A ``webhook.test`` delivery to one webhook, whatever it subscribes to and even when inactive."""
    agent_id = webhook.agent.agent_id if webhook.agent is not None else None
    payload = {
        "event": ev.TEST,
        "occurredAt": _iso(now),
        "agentId": agent_id,
        "summary": f"loopsite: a test event for the webhook '{webhook.name}', sent by {actor_label}.",
        "url": _link("home"),
        "data": {"kind": ev.TEST, "actor": actor_label, "message": ""},
    }
    return _deliveries_create(webhooks=[webhook], event=ev.TEST, payload=payload)[0]


def delivery_resend(*, delivery: WebhookDelivery, now: datetime) -> None:
    """Send a delivery again (same id, so receivers that already have it can tell), with a fresh set of attempts.
    Earlier attempts stay in its history."""
    with transaction.atomic():
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            status=WebhookDelivery.Status.PENDING, attempts=0, next_attempt_at=None, delivered_at=None
        )
        outbox_send(OUTBOX_HANDLER, delivery_pk=delivery.pk)
    logger.info("webhook.resend", extra={"delivery_id": str(delivery.delivery_id), "webhook_id": delivery.webhook_id})


def delivery_attempt(*, delivery_pk: int, now: datetime) -> bool:
    """One attempt at a pending delivery that is due, if no one else is making it. True when it was delivered.

    The claim moves ``next_attempt_at`` past the attempt's longest possible duration: a worker that dies mid-attempt
    leaves the delivery to the due pass after that."""
    timeout = float(settings.WEBHOOK_TIMEOUT_SECONDS)
    claimed = WebhookDelivery.objects.filter(_due(now), pk=delivery_pk).update(
        next_attempt_at=now + timedelta(seconds=timeout + 60)
    )
    if not claimed:
        return False
    delivery = WebhookDelivery.objects.select_related("webhook").get(pk=delivery_pk)
    webhook = delivery.webhook
    attempts = delivery.attempts + 1
    log = {"delivery_id": str(delivery.delivery_id), "webhook_id": webhook.pk, "webhook_event": delivery.event}
    if not webhook.active and delivery.event != ev.TEST:
        status_code, error, delivered = None, "the webhook is inactive", False
        attempts = max(attempts, int(settings.WEBHOOK_MAX_ATTEMPTS))  # nothing to wait for
    else:
        body = body_render(payload=delivery.payload, format=webhook.format)
        headers = headers_for(
            event=delivery.event, delivery_id=str(delivery.delivery_id), secret=webhook.secret, body=body
        )
        outcome = post(url=webhook.url, body=body, headers=headers, timeout=timeout)
        status_code, error, delivered = outcome.status_code, outcome.error, outcome.delivered
    history = [*delivery.history, {"at": _iso(now), "statusCode": status_code, "error": error[:500]}][-HISTORY_KEPT:]
    fields: dict[str, Any] = {"attempts": attempts, "last_status_code": status_code, "history": history}
    if delivered:
        # last_error keeps the last failure, if any, beside the success that followed it.
        fields.update(status=WebhookDelivery.Status.DELIVERED, delivered_at=now, next_attempt_at=None)
        logger.info("webhook.delivered", extra={**log, "attempts": attempts, "status_code": status_code})
    elif attempts >= int(settings.WEBHOOK_MAX_ATTEMPTS):
        fields.update(status=WebhookDelivery.Status.FAILED, last_error=error[:2000], next_attempt_at=None)
        logger.warning("webhook.failed", extra={**log, "attempts": attempts, "error": error})
    else:
        fields.update(last_error=error[:2000], next_attempt_at=now + retry_delay(attempts))
        logger.info("webhook.retry", extra={**log, "attempts": attempts, "error": error})
    WebhookDelivery.objects.filter(pk=delivery_pk).update(**fields)
    return delivered


def deliveries_due_send(*, now: datetime, limit: int = DUE_PASS_LIMIT) -> int:
    """The due pass (every minute): one attempt at each pending delivery whose time has come, oldest first."""
    due = list(WebhookDelivery.objects.filter(_due(now)).order_by("pk").values_list("pk", flat=True)[:limit])
    return sum(delivery_attempt(delivery_pk=pk, now=now) for pk in due)
