"""What a receiver gets: the body, the headers and the signature; retries with backoff; giving up."""

import hashlib
import hmac
import json
import socket
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from approvals.lock import agent_config_lock
from tests.factories import NOW
from tests.webhooks.conftest import Receiver, make_webhook
from webhooks import events as ev
from webhooks.models import Webhook, WebhookDelivery
from webhooks.services import deliveries_due_send, delivery_attempt
from webhooks.tasks import webhook_deliver_due_task

pytestmark = pytest.mark.django_db


def verify(secret: str, body: bytes, header: str) -> bool:
    """The check docs/webhooks.md gives receivers."""
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header)


def _lock(agent: Any, approver: Any) -> WebhookDelivery:
    agent_config_lock(agent=agent, actor=approver, rationale="stable  now", now=NOW)
    return WebhookDelivery.objects.get()


def test_json_format__body_headers_and_signature_as_documented(agent: Any, approver: Any, receiver: Receiver) -> None:
    hook = make_webhook(receiver, "/hook", events=[ev.AGENT_LOCKED], agent=agent)
    delivery = _lock(agent, approver)

    assert delivery_attempt(delivery_pk=delivery.pk, now=timezone.now()) is True

    [request] = receiver.to("/hook")
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-Loopsite-Event"] == "agent.locked"
    assert request.headers["X-Loopsite-Delivery"] == str(delivery.delivery_id)
    assert verify(hook.secret, request.body, request.headers["X-Loopsite-Signature"])
    assert not verify("another secret", request.body, request.headers["X-Loopsite-Signature"])
    assert not verify(hook.secret, request.body + b" ", request.headers["X-Loopsite-Signature"])
    body = json.loads(request.body)
    assert body == {
        "id": str(delivery.delivery_id),
        "event": "agent.locked",
        "occurredAt": "2026-03-02T09:00:00Z",
        "agentId": "triage",
        "summary": "triage: alice locked the config (stable now).",
        "url": "http://127.0.0.1:8000/lock/triage/",
        "data": {
            "kind": "agent.locked",
            "auditEventId": body["data"]["auditEventId"],
            "thresholdName": None,
            "before": {"locked": False},
            "after": {"locked": True},
            "proposalId": None,
            "configVersion": None,
            "actor": "alice",
            "message": "stable  now",
            "detail": {},
        },
    }
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("delivered", 1, 200)
    assert delivery.delivered_at is not None and delivery.next_attempt_at is None


def test_chat_format__text_with_summary_and_link__still_signed(agent: Any, approver: Any, receiver: Receiver) -> None:
    hook = make_webhook(receiver, "/chat", events=[ev.AGENT_LOCKED], format=Webhook.Format.CHAT)
    delivery = _lock(agent, approver)

    delivery_attempt(delivery_pk=delivery.pk, now=timezone.now())

    [request] = receiver.to("/chat")
    assert json.loads(request.body) == {
        "text": "triage: alice locked the config (stable now). http://127.0.0.1:8000/lock/triage/"
    }
    assert verify(hook.secret, request.body, request.headers["X-Loopsite-Signature"])
    assert request.headers["X-Loopsite-Delivery"] == str(delivery.delivery_id)


def test_receiver_fails_twice__retried_with_backoff__delivered_on_the_third_attempt(
    agent: Any, approver: Any, receiver: Receiver
) -> None:
    make_webhook(receiver, "/flaky", events=[ev.AGENT_LOCKED])
    receiver.answer("/flaky", 500, 500)
    delivery = _lock(agent, approver)
    start = timezone.now()

    assert delivery_attempt(delivery_pk=delivery.pk, now=start) is False
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, 500)
    assert delivery.last_error.startswith("HTTP 500") and delivery.next_attempt_at == start + timedelta(seconds=30)

    assert deliveries_due_send(now=start + timedelta(seconds=29)) == 0  # not due yet
    assert len(receiver.to("/flaky")) == 1
    assert deliveries_due_send(now=start + timedelta(seconds=30)) == 0  # the second attempt, failing
    delivery.refresh_from_db()
    assert delivery.attempts == 2 and delivery.next_attempt_at == start + timedelta(seconds=90)
    assert deliveries_due_send(now=start + timedelta(seconds=90)) == 1

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("delivered", 3, 200)
    assert [h["statusCode"] for h in delivery.history] == [500, 500, 200]
    assert delivery.last_error.startswith("HTTP 500")  # the last failure stays on record
    requests = receiver.to("/flaky")
    assert len(requests) == 3 and len({r.headers["X-Loopsite-Delivery"] for r in requests}) == 1
    assert len({r.body for r in requests}) == 1

    # Delivered: neither the task nor the due pass sends it again.
    later = start + timedelta(days=1)
    assert delivery_attempt(delivery_pk=delivery.pk, now=later) is False
    assert deliveries_due_send(now=later) == 0
    assert len(receiver.to("/flaky")) == 3


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_receiver_down__retried_until_max_attempts__failed_saying_connection_refused(
    agent: Any, approver: Any, settings: Any
) -> None:
    Webhook.objects.create(name="down", url=f"http://127.0.0.1:{_closed_port()}/hook", events=[ev.AGENT_LOCKED])
    delivery = _lock(agent, approver)
    now = timezone.now()
    waits = []

    for _ in range(settings.WEBHOOK_MAX_ATTEMPTS):
        assert deliveries_due_send(now=now) == 0
        delivery.refresh_from_db()
        if delivery.next_attempt_at is not None:
            waits.append((delivery.next_attempt_at - now).total_seconds())
            now = delivery.next_attempt_at

    assert waits == [30, 60, 120, 240, 480, 960, 1920]
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("failed", 8, None)
    assert "refused" in delivery.last_error.lower() and delivery.next_attempt_at is None
    assert deliveries_due_send(now=now + timedelta(days=1)) == 0
    delivery.refresh_from_db()
    assert delivery.attempts == 8


def test_redirect__a_failure__not_followed(agent: Any, approver: Any, receiver: Receiver, settings: Any) -> None:
    settings.WEBHOOK_MAX_ATTEMPTS = 1
    make_webhook(receiver, "/moved", events=[ev.AGENT_LOCKED])
    receiver.answer("/moved", 302)
    delivery = _lock(agent, approver)

    delivery_attempt(delivery_pk=delivery.pk, now=timezone.now())

    delivery.refresh_from_db()
    assert (delivery.status, delivery.last_status_code) == ("failed", 302)
    assert len(receiver.requests) == 1


def test_setup_periodic_tasks__webhook_retries_every_minute(receiver: Receiver, agent: Any, approver: Any) -> None:
    call_command("setup_periodic_tasks", stdout=StringIO())

    task = PeriodicTask.objects.get(name="webhook retries every minute")
    assert task.task == "webhooks.deliver_due" and str(task.interval) == "every minute"
    make_webhook(receiver, "/hook", events=[ev.AGENT_LOCKED])
    _lock(agent, approver)
    assert webhook_deliver_due_task() == 1  # the beat task: a new delivery whose hand-off was lost is due at once
    assert len(receiver.to("/hook")) == 1
