"""Webhooks in the admin: superusers only, URLs checked, a test event, and re-sending a delivery."""

import json
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone

from approvals.lock import agent_config_lock
from tests.factories import NOW, user_with_role
from tests.webhooks.conftest import Receiver, make_webhook
from webhooks import events as ev
from webhooks.models import Webhook, WebhookDelivery
from webhooks.services import delivery_attempt

pytestmark = pytest.mark.django_db
# admin_client is pytest-django's, signed in as the suite's admin_user (a superuser, root-admin).


def _form(url: str, **overrides: Any) -> dict[str, Any]:
    return {
        "name": "team chat",
        "agent": "",
        "url": url,
        "secret": "s3cret",
        "events": [ev.PROPOSAL_DECIDED, ev.CONFIG_ROLLED_BACK],
        "format": "chat",
        "active": "on",
        **overrides,
    }


@pytest.mark.parametrize("url", ["ftp://chat.example.com/hook", "javascript:alert(1)", "file:///etc/passwd", "chat"])
def test_admin_add_webhook__url_not_http_or_https__refused(admin_client: Client, url: str) -> None:
    response = admin_client.post("/admin/webhooks/webhook/add/", _form(url))

    assert response.status_code == 200
    assert "Enter a valid URL." in response.content.decode()
    assert not Webhook.objects.exists()


def test_admin_add_webhook__https_url_and_events_as_checkboxes__saved(admin_client: Client) -> None:
    page = admin_client.get("/admin/webhooks/webhook/add/").content.decode()
    assert 'type="checkbox" name="events" value="watchdog.verdict"' in page

    response = admin_client.post("/admin/webhooks/webhook/add/", _form("https://chat.example.com/hooks/T0/B1"))

    assert response.status_code == 302
    hook = Webhook.objects.get()
    assert hook.events == ["proposal.decided", "config.rolled_back"] and hook.agent is None
    assert hook.format == "chat" and hook.secret == "s3cret"


def test_admin_add_webhook__no_events__refused(admin_client: Client) -> None:
    response = admin_client.post("/admin/webhooks/webhook/add/", _form("https://x.example.com/", events=[]))

    assert response.status_code == 200 and not Webhook.objects.exists()


def test_webhook__secret_made_by_default() -> None:
    first, second = Webhook(name="a"), Webhook(name="b")

    assert len(first.secret) == 64 and first.secret != second.secret


def test_admin_send_test_event__delivered_to_the_receiver(
    admin_client: Client, receiver: Receiver, send_at_once: list[int], django_capture_on_commit_callbacks: Any
) -> None:
    hook = make_webhook(receiver, "/hook", events=[ev.AGENT_LOCKED])

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            "/admin/webhooks/webhook/", {"action": "send_test_event", "_selected_action": [hook.pk]}
        )

    assert response.status_code == 302
    [request] = receiver.to("/hook")
    assert request.headers["X-Loopsite-Event"] == "webhook.test"
    assert json.loads(request.body)["summary"] == "loopsite: a test event for the webhook 'hook', sent by root-admin."
    assert WebhookDelivery.objects.get().status == "delivered"


def test_admin_resend__failed_delivery__sent_again_with_the_same_id(
    admin_client: Client,
    agent: Any,
    approver: Any,
    receiver: Receiver,
    send_at_once: list[int],
    django_capture_on_commit_callbacks: Any,
    settings: Any,
) -> None:
    settings.WEBHOOK_MAX_ATTEMPTS = 1
    make_webhook(receiver, "/hook", events=[ev.AGENT_LOCKED])
    receiver.answer("/hook", 503)
    agent_config_lock(agent=agent, actor=approver, rationale="stable", now=NOW)
    delivery = WebhookDelivery.objects.get()
    delivery_attempt(delivery_pk=delivery.pk, now=timezone.now())
    delivery.refresh_from_db()
    assert delivery.status == "failed"
    listing = admin_client.get("/admin/webhooks/webhookdelivery/?status__exact=failed").content.decode()
    assert str(delivery.delivery_id) in listing and "HTTP 503" in listing

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            "/admin/webhooks/webhookdelivery/", {"action": "resend", "_selected_action": [delivery.pk]}
        )

    assert response.status_code == 302
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("delivered", 1, 200)
    assert [h["statusCode"] for h in delivery.history] == [503, 200]
    requests = receiver.to("/hook")
    assert [r.headers["X-Loopsite-Delivery"] for r in requests] == [str(delivery.delivery_id)] * 2


def test_admin_webhooks__staff_who_is_not_a_superuser__refused(receiver: Receiver) -> None:
    staff = user_with_role("approver", username="staff-bob", is_staff=True)
    staff.user_permissions.set(Permission.objects.filter(content_type__app_label="webhooks"))
    hook = make_webhook(receiver, "/hook", events=[ev.AGENT_LOCKED])
    client = Client()
    client.force_login(staff)

    assert client.get("/admin/webhooks/webhook/").status_code == 403
    assert client.get(f"/admin/webhooks/webhook/{hook.pk}/change/").status_code == 403
    assert client.get("/admin/webhooks/webhookdelivery/").status_code == 403
