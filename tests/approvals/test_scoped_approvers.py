"""Scoped approvers (issue 12, item 5). When an agent has designated approvers, only they and admins decide its
proposals, lock or unlock it and roll it back; before, any approver could, and the designation only chose who got
the email. The service, the API and the pages all refuse the others with a 403 naming why, and change nothing."""

import html
import re
from collections.abc import Callable
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command
from django.urls import reverse

from approvals.exceptions import NotAnApprover
from approvals.lock import agent_config_lock, agent_config_unlock
from approvals.models import AuditEvent, VersionWatch
from approvals.services import config_rollback, proposal_decide
from approvals.watchdog import watch_mark_good, watch_rollback, watches_ensure
from tests.conftest import client_for
from tests.factories import NOW, make_proposal, user_with_role
from thresholds.models import Agent, ConfigVersion
from tuner.models import Proposal, ProposalApproval

pytestmark = pytest.mark.django_db

REFUSAL = "carol is not one of triage's designated approvers (alice, bob); for triage, only they and admins"


@pytest.fixture
def carol(db: None) -> Any:
    """An approver, but not one of triage's designated approvers."""
    return user_with_role("approver", username="carol")


@pytest.fixture
def scene(agent: Agent, designated: list[Any], carol: Any) -> dict[str, Any]:
    """triage with designated approvers alice and bob: v2 live from a proposal alice accepted (and under watch),
    and a second proposal pending."""
    alice = designated[0]
    accepted = make_proposal(agent, proposed=0.66, now=NOW - timedelta(hours=2))
    proposal_decide(
        proposal=accepted, actor=alice, decision="accept", rationale="cluster", now=NOW - timedelta(hours=1)
    )
    watches_ensure(now=NOW, agent=agent)
    pending = make_proposal(agent, threshold="escalate_threshold", proposed=0.9, now=NOW)
    return {"agent": agent, "alice": alice, "pending": pending, "watch": VersionWatch.objects.get(version__number=2)}


def state(agent: Agent) -> tuple[Any, ...]:
    """Everything a refused attempt must leave as it was."""
    agent.refresh_from_db()
    return (
        AuditEvent.objects.count(),
        list(ConfigVersion.objects.filter(agent=agent).values_list("number", "is_live")),
        list(Proposal.objects.order_by("pk").values_list("status", "decided_by")),
        ProposalApproval.objects.count(),
        (agent.locked_at, agent.locked_by_id),
        list(VersionWatch.objects.values_list("state", "judged_by")),
    )


SERVICE_CALLS: dict[str, Callable[[dict[str, Any], Any], Any]] = {
    "decide proposals": lambda s, who: proposal_decide(
        proposal=s["pending"], actor=who, decision="accept", rationale="looks right", now=NOW
    ),
    "lock an agent's config": lambda s, who: agent_config_lock(
        agent=s["agent"], actor=who, rationale="converged", now=NOW
    ),
    "unlock an agent's config": lambda s, who: agent_config_unlock(
        agent=s["agent"], actor=who, rationale="drifting again", now=NOW
    ),
    "roll back configs": lambda s, who: config_rollback(
        agent=s["agent"], to_version=1, actor=who, reason="too quiet", now=NOW
    ),
    "judge a watched change": lambda s, who: watch_mark_good(
        watch=s["watch"], actor=who, rationale="seasonal", now=NOW
    ),
    "roll back configs (watched change)": lambda s, who: watch_rollback(
        watch=s["watch"], actor=who, rationale="worse", now=NOW
    ),
}


@pytest.mark.parametrize("verb", list(SERVICE_CALLS))
def test_services__approver_not_designated__refused_naming_why_nothing_changes(scene, carol, verb):
    if verb.startswith("unlock"):
        agent_config_lock(agent=scene["agent"], actor=scene["alice"], rationale="converged", now=NOW)
    before = state(scene["agent"])

    with pytest.raises(NotAnApprover) as refused:
        SERVICE_CALLS[verb](scene, carol)

    assert refused.value.status_code == 403 and refused.value.code == "not_designated_approver"
    assert refused.value.message == f"{REFUSAL} {verb.removesuffix(' (watched change)')}"
    assert state(scene["agent"]) == before


@pytest.mark.parametrize("verb", list(SERVICE_CALLS))
def test_services__designated_approver__allowed(scene, approver2, verb):
    if verb.startswith("unlock"):
        agent_config_lock(agent=scene["agent"], actor=scene["alice"], rationale="converged", now=NOW)

    SERVICE_CALLS[verb](scene, approver2)  # bob is designated

    assert AuditEvent.objects.filter(actor=approver2).exists()


def test_services__admin_not_designated__decides_locks_and_rolls_back(scene, admin_user):
    proposal_decide(proposal=scene["pending"], actor=admin_user, decision="accept", rationale="fine", now=NOW)
    config_rollback(agent=scene["agent"], to_version=2, actor=admin_user, reason="undo", now=NOW)
    agent_config_lock(agent=scene["agent"], actor=admin_user, rationale="done", now=NOW)

    assert list(AuditEvent.objects.filter(actor=admin_user).values_list("kind", flat=True)) == [
        "proposal.accepted",
        "config.activated",
        "config.rolled_back",
        "agent.locked",
    ]


def test_services__no_designated_approvers__every_approver_decides(agent, carol):
    proposal = make_proposal(agent, proposed=0.66)

    decided = proposal_decide(proposal=proposal, actor=carol, decision="accept", rationale="ok", now=NOW)

    assert decided.status == "accepted"


# --- The API ------------------------------------------------------------------------------------------------


def test_api__approver_not_designated__403_naming_why_for_decide_lock_and_unlock(scene, carol):
    agent, pending = scene["agent"], scene["pending"]
    before = state(agent)
    api = client_for(carol)

    decide = api.post(
        f"/api/v1/proposals/{pending.pk}/decision", {"decision": "accept", "rationale": "ok"}, format="json"
    )
    lock = api.post("/api/v1/agents/triage/lock", {"rationale": "converged"}, format="json")

    assert decide.status_code == 403 and lock.status_code == 403
    assert decide.json()["error"] == {
        "code": "not_designated_approver",
        "message": f"{REFUSAL} decide proposals",
        "field": None,
    }
    assert lock.json()["error"]["message"] == f"{REFUSAL} lock an agent's config"
    assert state(agent) == before

    agent_config_lock(agent=agent, actor=scene["alice"], rationale="converged", now=NOW)
    locked = state(agent)
    unlock = api.post("/api/v1/agents/triage/unlock", {"rationale": "drifting"}, format="json")
    assert unlock.status_code == 403 and unlock.json()["error"]["message"] == f"{REFUSAL} unlock an agent's config"
    assert state(agent) == locked


def test_api__designated_approver__decides(scene, approver2):
    response = client_for(approver2).post(
        f"/api/v1/proposals/{scene['pending'].pk}/decision", {"decision": "accept", "rationale": "ok"}, format="json"
    )

    assert response.status_code == 200 and response.json()["status"] == "accepted"


def text(response: Any) -> str:
    """The page as a reader sees it (entities such as &#x27; unescaped)."""
    return html.unescape(response.content.decode())


def assert_refused(response: Any, verb: str) -> None:
    assert response.status_code == 403 and f"{REFUSAL} {verb}" in text(response)


# --- The pages ----------------------------------------------------------------------------------------------


def test_proposal_page__approver_not_designated__no_form_a_sentence_and_post_refused_403(client, scene, carol):
    url = reverse("proposal-detail", args=[scene["pending"].pk])
    client.force_login(carol)
    before = state(scene["agent"])

    page = text(client.get(url))
    assert 'name="decision"' not in page
    assert f'data-testid="decide-note">{REFUSAL} decide proposals.</p>' in page

    assert_refused(client.post(url, {"decision": "accept", "rationale": "looks right"}), "decide proposals")
    assert state(scene["agent"]) == before


def test_rollback_page__approver_not_designated__no_buttons_a_sentence_and_post_refused_403(client, scene, carol):
    url = reverse("config-rollback", args=["triage"])
    client.force_login(carol)
    before = state(scene["agent"])

    page = text(client.get(url))
    assert "Roll back to v1" not in page and f"{REFUSAL} roll back configs." in page

    assert_refused(client.post(url, {"to": "1", "reason": "too quiet"}), "roll back configs")
    assert state(scene["agent"]) == before


def test_lock_page__approver_not_designated__dashboard_says_who_may_and_post_refused_403(client, scene, carol):
    url = reverse("config-lock", args=["triage"])
    client.force_login(carol)
    before = state(scene["agent"])

    dashboard = text(client.get(reverse("dashboard-agent", args=["triage"])))
    assert 'value="lock"' not in dashboard and f"{REFUSAL} lock an agent's config." in dashboard

    assert_refused(client.post(url, {"action": "lock", "rationale": "converged"}), "lock an agent's config")
    assert state(scene["agent"]) == before

    agent_config_lock(agent=scene["agent"], actor=scene["alice"], rationale="converged", now=NOW)
    locked = state(scene["agent"])
    assert_refused(client.post(url, {"action": "unlock", "rationale": "drifting"}), "unlock an agent's config")
    assert state(scene["agent"]) == locked


def test_watch_page__approver_not_designated__no_buttons_a_sentence_and_post_refused_403(client, scene, carol):
    url = reverse("version-watch", args=["triage", 2])
    client.force_login(carol)
    before = state(scene["agent"])

    with time_machine.travel(NOW, tick=False):
        page = text(client.get(url))
        assert 'value="good"' not in page and 'value="rollback"' not in page
        assert f"{REFUSAL} judge a watched change." in page
        assert_refused(client.post(url, {"action": "good", "rationale": "x"}), "judge a watched change")
        assert_refused(client.post(url, {"action": "rollback", "rationale": "x"}), "roll back configs")
    assert state(scene["agent"]) == before


def test_admin_decide_form__staff_approver_not_designated__refused_with_the_reason(client, scene):
    dave = user_with_role("approver", username="dave", is_staff=True)
    dave.user_permissions.add(Permission.objects.get(codename="view_proposal"))
    client.force_login(dave)
    before = state(scene["agent"])
    pending = scene["pending"]

    page = text(client.get(reverse("admin:tuner_proposal_change", args=[pending.pk])))
    assert 'id="decide-form"' not in page and "dave is not one of triage's designated approvers" in page
    response = client.post(
        reverse("admin:tuner_proposal_decide", args=[pending.pk]),
        {"decision": "accept", "rationale": "fine"},
        follow=True,
    )
    assert "dave is not one of triage's designated approvers (alice, bob)" in text(response)
    assert state(scene["agent"]) == before


@pytest.mark.parametrize(
    ("command", "args", "verb"),
    [
        ("lock_config", ["--reason", "converged"], "lock an agent's config"),
        ("rollback_config", ["--to", "1", "--reason", "too quiet"], "roll back configs"),
    ],
)
def test_commands__by_an_approver_not_designated__refused_naming_why(scene, carol, command, args, verb):
    before = state(scene["agent"])

    with pytest.raises(CommandError, match=re.escape(f"{REFUSAL} {verb}")):
        call_command(command, "triage", "--by", "carol", *args, stdout=StringIO())

    assert state(scene["agent"]) == before
