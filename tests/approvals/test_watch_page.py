"""The watch page: an approver reads the watchdog's verdict on one change and marks it good or rolls it back."""

from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.urls import reverse

from approvals.models import AuditEvent, VersionWatch
from approvals.services import proposal_create_manual, proposal_decide
from tests.approvals.conftest import log_responded
from tests.factories import NOW, UserFactory, make_agent, make_proposal
from thresholds.selectors import config_get_live
from tuner.models import Proposal

CHANGED_AT = NOW - timedelta(days=3)


@pytest.fixture
def changed(db: None, approver2: Any) -> tuple[Any, Proposal]:
    """triage: 100 baseline responses (30 % errors) under v1, then v2 (flag_threshold 0.6 -> 0.7) accepted by bob,
    and 60 responses under it (35 % errors: not significant either way)."""
    agent, _ = make_agent(now=NOW - timedelta(days=21))
    log_responded(agent, prefix="base", n=100, errors=30, start=CHANGED_AT - timedelta(days=10))
    proposal = make_proposal(agent, proposed=0.7, now=CHANGED_AT - timedelta(hours=1))
    proposal_decide(proposal=proposal, actor=approver2, decision="accept", rationale="cluster", now=CHANGED_AT)
    log_responded(agent, prefix="new", n=60, errors=21, start=CHANGED_AT + timedelta(hours=1))
    return agent, proposal


def url(number: int = 2) -> str:
    return reverse("version-watch", args=["triage", number])


@pytest.mark.django_db
def test_watch_page__approver__verdict_sentence_figures_and_both_buttons(client, approver, changed):
    client.force_login(approver)

    with time_machine.travel(NOW, tick=False):
        response = client.get(url())

    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-testid="watch-state">watching<' in html
    assert "Since v2 went live, reviewers found an error in 35.0% of decisions (21 of 60 responses)" in html
    assert "against 30.0% under v1" in html and "tolerates up to 33.0%" in html
    assert "flag_threshold: 0.6 → 0.7" in html
    assert 'name="action" value="good"' in html and 'name="action" value="rollback"' in html
    assert '<label for="watch-rationale">' in html
    assert VersionWatch.objects.get(version__number=2).state == "watching"  # made by the page, before any pass


@pytest.mark.django_db
def test_watch_page__mark_good__judged_audited_and_no_longer_watched(client, approver, changed):
    agent, proposal = changed
    client.force_login(approver)

    with time_machine.travel(NOW, tick=False):
        response = client.post(url(), {"action": "good", "rationale": "the rise is the new seasonal mix"}, follow=True)

    assert response.status_code == 200
    assert "v2 is marked good" in response.content.decode()
    watch = VersionWatch.objects.get(version__number=2)
    assert (watch.state, watch.judged_by, watch.rationale) == ("good", approver, "the rise is the new seasonal mix")
    event = AuditEvent.objects.get(kind="watch.marked_good")
    assert event.actor == approver and event.proposal == proposal and event.config_version == watch.version
    assert event.message == "the rise is the new seasonal mix"
    assert event.detail["before"] == "watching" and event.detail["assessment"]["new_responses"] == 60
    # No longer watched: even a bad week now is not rolled back by the watchdog.
    from approvals.watchdog import watchdog_run

    log_responded(agent, prefix="later", n=100, errors=90, start=CHANGED_AT + timedelta(days=1))
    assert watchdog_run(now=NOW) == []


@pytest.mark.django_db
def test_watch_page__mark_good_without_rationale__refused_nothing_changes(client, approver, changed):
    client.force_login(approver)

    with time_machine.travel(NOW, tick=False):
        response = client.post(url(), {"action": "good", "rationale": "  "})

    assert response.status_code == 400
    assert "rationale is required" in response.content.decode()
    assert VersionWatch.objects.get(version__number=2).state == "watching"
    assert not AuditEvent.objects.filter(kind="watch.marked_good").exists()


@pytest.mark.django_db
def test_watch_page__roll_back_by_hand__through_the_watchdogs_rollback_audited_and_emailed(
    client, approver, changed, django_capture_on_commit_callbacks, mailoutbox
):
    agent, proposal = changed
    client.force_login(approver)

    with django_capture_on_commit_callbacks(execute=True), time_machine.travel(NOW, tick=False):
        response = client.post(url(), {"action": "rollback", "rationale": "customers complain"}, follow=True)

    assert response.status_code == 200
    assert "Rolled back: v3 is live with the values of v1." in response.content.decode()
    live = config_get_live(agent=agent)
    assert live.version == 3 and live.thresholds == {"flag_threshold": 0.6, "escalate_threshold": 0.85}
    watch = VersionWatch.objects.get(version__number=2)
    assert watch.rolled_back_by is not None and watch.rolled_back_by.number == 3
    assert (watch.state, watch.judged_by) == ("rolled_back", approver)
    proposal.refresh_from_db()
    assert proposal.status == "rolled_back"
    config_event = AuditEvent.objects.get(kind="config.rolled_back")
    assert config_event.actor == approver and config_event.detail["manual"] is True
    assert config_event.detail["undoneVersions"] == [2] and config_event.message.startswith("customers complain")
    watch_event = AuditEvent.objects.get(kind="watch.rolled_back")
    assert watch_event.actor == approver and watch_event.message == "customers complain"
    assert len(mailoutbox) == 1 and "rolled back by alice" in mailoutbox[0].body
    # Nothing is left to judge.
    html = client.get(url()).content.decode()
    assert "Rolled back: nothing is left to judge." in html and 'value="rollback"' not in html


@pytest.mark.django_db
def test_watch_page__reviewer__refused_to_see_or_judge(client, reviewer, changed):
    client.force_login(reviewer)

    assert client.get(url()).status_code == 403
    assert client.post(url(), {"action": "rollback", "rationale": "x"}).status_code == 403
    assert config_get_live(agent=changed[0]).version == 2


@pytest.mark.django_db
def test_watch_page__staff_who_is_not_an_approver__sees_but_may_not_judge(client, changed):
    staff = UserFactory(username="operator-staff", is_staff=True)
    client.force_login(staff)

    with time_machine.travel(NOW, tick=False):
        html = client.get(url()).content.decode()
        assert "Only approvers judge a watched change." in html and 'value="good"' not in html
        assert client.post(url(), {"action": "good", "rationale": "fine"}).status_code == 403
    assert VersionWatch.objects.get(version__number=2).state == "watching"


@pytest.mark.django_db
def test_watch_page__author_of_a_hand_made_change__may_not_mark_it_good(client, approver, approver2):
    agent, _ = make_agent(now=NOW - timedelta(days=21))
    proposal = proposal_create_manual(
        agent=agent, threshold_name="flag_threshold", proposed_value=0.7, rationale="mine", actor=approver, now=NOW
    )
    proposal_decide(proposal=proposal, actor=approver2, decision="accept", rationale="ok", now=NOW)
    client.force_login(approver)

    with time_machine.travel(NOW + timedelta(hours=1), tick=False):
        html = client.get(url()).content.decode()
        response = client.post(url(), {"action": "good", "rationale": "it is fine"})

    assert "another approver must mark it good" in html
    assert response.status_code == 403 and "another approver must judge it" in response.content.decode()


@pytest.mark.django_db
def test_watch_page__version_not_watched__not_found(client, approver, changed):
    client.force_login(approver)

    assert client.get(url(1)).status_code == 404  # the initial version
    assert client.get(reverse("version-watch", args=["nobody", 2])).status_code == 404


@pytest.mark.django_db
def test_proposal_page_and_dashboard__link_to_the_watch(client, approver, changed):
    _, proposal = changed
    client.force_login(approver)

    with time_machine.travel(NOW, tick=False):
        detail = client.get(reverse("proposal-detail", args=[proposal.pk])).content.decode()
        dashboard = client.get(reverse("dashboard-agent", args=["triage"])).content.decode()

    assert f'href="{url()}" data-testid="watch-link">Watchdog on v2: watching</a>' in detail
    assert "Changes under watch" in dashboard and f'<a href="{url()}">v2</a> flag_threshold' in dashboard


@pytest.mark.django_db
def test_dashboard__reviewer__sees_the_states_without_links(client, reviewer, changed):
    client.force_login(reviewer)

    with time_machine.travel(NOW, tick=False):
        html = client.get(reverse("dashboard-agent", args=["triage"])).content.decode()

    assert "Changes under watch" in html and "v2 flag_threshold" in html and url() not in html
    assert "<strong>watching</strong>" in html
