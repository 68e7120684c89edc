"""Which loop events reach which webhooks, and only once the change is committed."""

import json
from datetime import timedelta
from typing import Any

import pytest
from django.db import transaction

from approvals.lock import agent_config_lock
from approvals.models import AuditEvent
from approvals.notifications import digest_send
from approvals.services import proposal_create_manual, proposal_decide
from loopsite.models import OutboxMessage
from tests.approvals.conftest import log_responded
from tests.factories import NOW, make_agent, make_proposal, user_with_role
from tests.webhooks.conftest import Receiver, make_webhook
from webhooks import events as ev
from webhooks.models import WebhookDelivery

EXPECTED_EVENTS = {
    "proposal.created": "proposal.created",
    "proposal.accepted": "proposal.decided",
    "proposal.approval_recorded": "proposal.decided",
    "proposal.modified": "proposal.decided",
    "proposal.rejected": "proposal.decided",
    "proposal.superseded": None,
    "proposal.expired": None,
    "proposal.commented": None,  # discussion stays in loopsite and its emails
    "config.activated": "config.activated",
    "config.rolled_back": "config.rolled_back",
    "config.manual": "config.activated",
    "tuner.run": None,
    "watch.good": "watchdog.verdict",
    "watch.marked_good": "watchdog.verdict",
    "watch.inconclusive": "watchdog.verdict",
    "watch.rolled_back": "watchdog.verdict",
    "agent.locked": "agent.locked",
    "agent.unlocked": "agent.unlocked",
    "rules.changed": None,
    "canary.started": "canary",
    "canary.promoted": "canary",
    "canary.aborted": "canary",
    "canary.inconclusive": "canary",
}


def test_event_for_kind__every_audit_kind__mapped_or_left_out_on_purpose() -> None:
    assert set(EXPECTED_EVENTS) == set(AuditEvent.Kind.values)
    assert {kind: ev.event_for_kind(kind) for kind in AuditEvent.Kind.values} == EXPECTED_EVENTS
    assert set(ev.KIND_EVENTS.values()) | {ev.DIGEST_WEEKLY} == set(ev.EVENTS)


def _events(received: list[Any]) -> list[str]:
    return [json.loads(r.body)["event"] for r in received]


@pytest.mark.django_db
def test_loop_events__global_and_agent_webhooks_get_them__another_agents_does_not(
    agent: Any,
    approver: Any,
    receiver: Receiver,
    send_at_once: list[int],
    django_capture_on_commit_callbacks: Any,
) -> None:
    other, _ = make_agent("other")
    make_webhook(receiver, "/global", events=[ev.PROPOSAL_DECIDED, ev.CONFIG_ACTIVATED, ev.AGENT_LOCKED])
    make_webhook(receiver, "/triage", events=ev.EVENTS, agent=agent)
    make_webhook(receiver, "/other", events=ev.EVENTS, agent=other)
    make_webhook(receiver, "/locks-only", events=[ev.AGENT_LOCKED, ev.AGENT_UNLOCKED])
    make_webhook(receiver, "/inactive", events=ev.EVENTS, active=False)
    proposal = make_proposal(agent, proposed=0.66)

    with django_capture_on_commit_callbacks(execute=True):
        proposal_decide(proposal=proposal, actor=approver, decision="accept", rationale="clear cluster", now=NOW)
        agent_config_lock(agent=agent, actor=approver, rationale="stable now", now=NOW + timedelta(minutes=1))

    decided_activated_locked = ["proposal.decided", "config.activated", "agent.locked"]
    assert _events(receiver.to("/global")) == decided_activated_locked
    assert _events(receiver.to("/triage")) == decided_activated_locked
    assert _events(receiver.to("/locks-only")) == ["agent.locked"]
    assert receiver.to("/other") == [] and receiver.to("/inactive") == []
    assert [r.headers["X-Loopsite-Event"] for r in receiver.to("/triage")] == decided_activated_locked
    assert len(send_at_once) == 7
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {"delivered"}
    decided = json.loads(receiver.to("/triage")[0].body)
    assert decided["summary"] == "triage: alice accepted the proposal: flag_threshold 0.6 -> 0.66 (clear cluster)."
    assert decided["url"] == f"http://127.0.0.1:8000/proposals/{proposal.pk}/"
    assert decided["data"]["decision"] == "accepted" and decided["data"]["partial"] is False
    assert decided["data"]["proposalId"] == proposal.pk and decided["data"]["configVersion"] == 2
    activated = json.loads(receiver.to("/triage")[1].body)
    assert activated["summary"] == "triage: config v2 is live (flag_threshold 0.6 -> 0.66), approved by alice."
    assert activated["url"] == "http://127.0.0.1:8000/dashboard/triage/"


@pytest.mark.django_db
def test_proposal_create_manual__agent_webhook__proposal_created_event(
    agent: Any, approver: Any, receiver: Receiver
) -> None:
    hook = make_webhook(receiver, "/triage", events=[ev.PROPOSAL_CREATED], agent=agent)

    proposal = proposal_create_manual(
        agent=agent,
        actor=approver,
        threshold_name="flag_threshold",
        proposed_value=0.65,
        rationale="too many alerts",
        now=NOW,
    )

    delivery = WebhookDelivery.objects.get(webhook=hook)
    assert delivery.event == "proposal.created" and delivery.status == "pending"
    assert delivery.payload["summary"] == "triage: alice proposed flag_threshold 0.6 -> 0.65 (too many alerts)."
    assert delivery.payload["data"]["proposalId"] == proposal.pk


@pytest.mark.django_db(transaction=True)
def test_change_rolled_back__nothing_recorded_or_sent__committed_change__sent_after_commit(
    receiver: Receiver, send_at_once: list[int]
) -> None:
    agent, _ = make_agent()
    approver = user_with_role("approver", username="alice")
    make_webhook(receiver, "/hook", events=[ev.AGENT_LOCKED])

    with pytest.raises(RuntimeError), transaction.atomic():
        agent_config_lock(agent=agent, actor=approver, rationale="stable now", now=NOW)
        assert WebhookDelivery.objects.count() == 1  # made with the change, in its transaction
        raise RuntimeError("the change fails after its audit row")

    assert not WebhookDelivery.objects.exists()
    assert not OutboxMessage.objects.filter(handler="webhook.deliver").exists()
    assert send_at_once == [] and receiver.requests == []

    with transaction.atomic():
        agent_config_lock(agent=agent, actor=approver, rationale="stable now", now=NOW)
        assert receiver.requests == []  # nothing leaves before the commit

    assert _events(receiver.to("/hook")) == ["agent.locked"]
    assert WebhookDelivery.objects.get().status == "delivered"


@pytest.mark.django_db
def test_digest_send__digest_webhook__weekly_digest_event_with_the_four_rates(
    agent: Any, approver: Any, receiver: Receiver
) -> None:
    last_monday = NOW - timedelta(days=7)
    log_responded(agent, prefix="wk", n=40, errors=10, start=last_monday + timedelta(hours=1))
    hook = make_webhook(receiver, "/digest", events=[ev.DIGEST_WEEKLY])
    make_webhook(receiver, "/no-digest", events=[ev.AGENT_LOCKED])

    digest_send(agent=agent, now=NOW)

    delivery = WebhookDelivery.objects.get()
    assert delivery.webhook == hook and delivery.event == "digest.weekly"
    body = delivery.payload
    assert body["summary"].startswith("triage: weekly digest, week of 2026-02-23: dismissal 25.0% (week before n/a)")
    assert body["data"]["rates"]["dismissalRate"] == {"week": 0.25, "weekBefore": None}
    assert body["data"]["weekStart"] == "2026-02-23" and body["data"]["responses"] == 40
    assert body["url"] == "http://127.0.0.1:8000/dashboard/triage/"


@pytest.mark.django_db
def test_proposal_decide__two_approvals_needed__first_sign_off_partial__second_final(
    agent: Any, approver: Any, receiver: Receiver
) -> None:
    agent.required_approvals = 2
    agent.save(update_fields=["required_approvals"])
    bob = user_with_role("approver", username="bob")
    make_webhook(receiver, "/hook", events=[ev.PROPOSAL_DECIDED])
    proposal = make_proposal(agent, proposed=0.66)

    proposal_decide(proposal=proposal, actor=approver, decision="accept", rationale="looks right", now=NOW)
    proposal_decide(proposal=proposal, actor=bob, decision="accept", rationale="agreed", now=NOW)

    first, second = WebhookDelivery.objects.order_by("pk")
    assert (first.payload["data"]["decision"], first.payload["data"]["partial"]) == ("approval_recorded", True)
    assert first.payload["summary"] == (
        "triage: alice signed off the proposal on flag_threshold; it needs more approvals to go live (looks right)."
    )
    assert (second.payload["data"]["decision"], second.payload["data"]["partial"]) == ("accepted", False)
