import json
from datetime import timedelta

import pytest
import time_machine
from django.urls import reverse

from approvals.services import proposal_decide
from tests.approvals.conftest import log_responded
from tests.factories import NOW, make_proposal
from thresholds.selectors import config_get_live


@pytest.mark.django_db
def test_proposal_detail_page__approver__seed_fields_live_value_samples_and_chart(client, agent, approver):
    ids = log_responded(agent, prefix="ev", n=6, errors=6, start=NOW - timedelta(days=2))
    proposal = make_proposal(agent, proposed=0.66, evidence_ids=ids, risk_flagged=True)
    client.force_login(approver)

    with time_machine.travel(NOW + timedelta(hours=1), tick=False):  # the chart shows the weeks up to now
        response = client.get(reverse("proposal-detail", args=[proposal.pk]))

    assert response.status_code == 200
    html = response.content.decode()
    assert "flag_threshold" in html and "0.66" in html
    assert "live config v1" in html
    assert "6 log entries" in html
    # A flagged risk comes first and plainly, before the impact.
    assert html.index("Risk: this change may raise missed signals.") < html.index("Expected impact")
    assert "interval -16 to -8" in html
    assert html.count('data-testid="sample-entry"') == 5
    assert "case ev 0" in html and "note on ev-0" in html and "amount_z" in html
    chart = json.loads(html.split('id="threshold-chart-data" type="application/json">')[1].split("</script>")[0])
    assert chart["current"] == 0.6 and chart["proposed"] == 0.66
    assert sum(chart["dismissed"]) == 6 and chart["dismissed"][14] == 6  # confidence 0.7 falls in bin 0.70


@pytest.mark.django_db
def test_proposal_detail_page__current_value_read_live_not_copied(client, agent, approver, approver2):
    stale = make_proposal(agent, proposed=0.66)
    other = make_proposal(agent, proposed=0.7)
    proposal_decide(proposal=other, actor=approver2, decision="accept", rationale="first", now=NOW)
    client.force_login(approver)

    html = client.get(reverse("proposal-detail", args=[stale.pk])).content.decode()

    assert "live config v2" in html and "0.6 when proposed" in html


@pytest.mark.django_db
def test_proposal_detail_page__accept_form__live_config_changes(client, agent, approver):
    proposal = make_proposal(agent, proposed=0.66)
    client.force_login(approver)

    response = client.post(
        reverse("proposal-detail", args=[proposal.pk]), {"decision": "accept", "rationale": "clear"}, follow=True
    )

    assert response.status_code == 200
    assert "Accepted: flag_threshold is 0.66 in v2, live now." in response.content.decode()
    assert config_get_live(agent=agent).thresholds["flag_threshold"] == 0.66


@pytest.mark.django_db
def test_proposal_detail_page__modify_too_far__error_shown_nothing_changes(client, agent, approver):
    proposal = make_proposal(agent, proposed=0.66)
    client.force_login(approver)

    response = client.post(
        reverse("proposal-detail", args=[proposal.pk]), {"decision": "modify", "value": "0.9", "rationale": "big"}
    )

    assert response.status_code == 400
    assert "more than 20%" in response.content.decode()
    assert config_get_live(agent=agent).version == 1


@pytest.mark.django_db
def test_proposal_pages__reviewer__forbidden(client, agent, reviewer):
    proposal = make_proposal(agent)
    client.force_login(reviewer)

    assert client.get(reverse("proposal-list")).status_code == 403
    assert client.get(reverse("proposal-detail", args=[proposal.pk])).status_code == 403
    assert client.post(reverse("proposal-detail", args=[proposal.pk]), {"decision": "accept"}).status_code == 403


@pytest.mark.django_db
def test_proposal_list_page__anonymous__sent_to_sign_in(client):
    response = client.get(reverse("proposal-list"))
    assert response.status_code == 302 and reverse("login") in response["Location"]


@pytest.mark.django_db
def test_proposal_list_page__pending_listed_with_live_values(client, agent, approver):
    make_proposal(agent, proposed=0.66, risk_flagged=True)
    client.force_login(approver)

    html = client.get(reverse("proposal-list")).content.decode()

    assert "flag_threshold" in html and "0.66" in html and "may raise missed signals" in html


@pytest.mark.django_db
def test_proposal_new_page__manual_proposal__pending_and_not_decidable_by_its_author(client, agent, approver):
    client.force_login(approver)

    response = client.post(
        reverse("proposal-new"),
        {"agent": "triage", "threshold": "flag_threshold", "value": "0.55", "rationale": "too quiet"},
        follow=True,
    )

    html = response.content.decode()
    assert "You proposed this change, so another approver must decide it." in html
    assert 'name="decision"' not in html


@pytest.mark.django_db
def test_config_rollback_page__roll_back_to_v1(client, agent, approver):
    proposal_decide(
        proposal=make_proposal(agent, proposed=0.7), actor=approver, decision="accept", rationale="t", now=NOW
    )
    client.force_login(approver)

    response = client.post(
        reverse("config-rollback", args=["triage"]), {"to": "1", "reason": "too quiet now"}, follow=True
    )

    assert "v3 is live, with the values of v1." in response.content.decode()
    assert config_get_live(agent=agent).thresholds["flag_threshold"] == 0.6


@pytest.mark.django_db
def test_admin_proposal_page__approval_panel_and_decision(client, agent, admin_user):
    proposal = make_proposal(agent, proposed=0.66, risk_flagged=True)
    client.force_login(admin_user)

    page = client.get(reverse("admin:tuner_proposal_change", args=[proposal.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert "Risk: this change may raise missed signals." in html and 'id="decide-form"' in html

    response = client.post(
        reverse("admin:tuner_proposal_decide", args=[proposal.pk]),
        {"decision": "modify", "value": "0.65", "rationale": "smaller"},
        follow=True,
    )
    assert f"Proposal #{proposal.pk} modified." in response.content.decode()
    assert config_get_live(agent=agent).thresholds["flag_threshold"] == 0.65
