import json
from datetime import timedelta

import pytest
import time_machine
from django.urls import reverse

from approvals.services import proposal_decide
from tests.approvals.conftest import log_responded, make_run
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
    assert "likely range -16 to -8" in html
    assert html.count('data-testid="sample-entry"') == 5
    assert "case ev 0" in html and "note on ev-0" in html and "amount_z" in html
    assert html.count(f'href="/decisions/{ids[0]}/?agentId=triage"') == 1  # ids are unique per agent only
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

    assert "live config v2" in html and "0.6</strong> when proposed; <strong>live now 0.7" in html


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


@pytest.mark.django_db
def test_proposal_list_page__live_value_moved_since__value_when_proposed_and_live_now(
    client, agent, approver, approver2
):
    stale = make_proposal(agent, proposed=0.66)
    other = make_proposal(agent, proposed=0.65, rank=2)
    proposal_decide(proposal=other, actor=approver2, decision="accept", rationale="first", now=NOW)
    client.force_login(approver)

    html = client.get(reverse("proposal-list")).content.decode()

    row = html.split(f'href="/proposals/{stale.pk}/">#{stale.pk}</a>')[1].split("</tr>")[0]
    assert '0.6 <span class="muted">live now 0.65</span>' in row
    assert '0.66 <span class="muted">(increase)</span>' in row


@pytest.mark.django_db
def test_proposal_detail_page__after_a_modify__heading_shows_the_decided_value_and_says_so(client, agent, approver):
    proposal = make_proposal(agent, proposed=0.66)
    client.force_login(approver)
    pending = client.get(reverse("proposal-detail", args=[proposal.pk])).content.decode()
    assert 'triage: flag_threshold 0.6 → 0.66 <span class="muted heading-note">(proposed)</span>' in pending

    client.post(
        reverse("proposal-detail", args=[proposal.pk]), {"decision": "modify", "value": "0.64", "rationale": "less"}
    )
    html = client.get(reverse("proposal-detail", args=[proposal.pk])).content.decode()
    listed = client.get(reverse("proposal-list") + "?status=modified").content.decode()

    heading = html.split('data-testid="proposal-heading">')[1].split("</h1>")[0]
    assert heading == (
        'triage: flag_threshold 0.6 → 0.64 <span class="muted heading-note">(modified from the proposed 0.66)</span>'
    )
    assert "(increase; modified to 0.64)" in listed
    # the replay was of the proposed value, and the sentence says so
    assert "Replayed for the proposed 0.66: cuts about 13 false alarms a month and lets no more real cases" in html


def _replayed_proposal(agent):
    """A flagged tuner proposal as the statistical generator stores it: replayed over a 28-day window."""
    proposal = make_proposal(agent, proposed=0.66, run=make_run(agent), risk_flagged=True)
    proposal.expected_impact = (
        "Replayed over the window: false alarms -604 (31% of today's) [90% bootstrap interval -650 to -560], real "
        "missed signals +23 [+10 to +35] against 40 today; the new value beat the current one in 97% of bootstrap "
        "resamples."
    )
    proposal.risk_assessment = (
        "RISK: may raise missed signals. The replay loses about 23 real case(s) that would now be missed (90% "
        "interval +10 to +35), 58% of today's 40."
    )
    proposal.impact = {
        "falseAlarms": {"change": -604, "low": -650, "high": -560},
        "misses": {"change": 23, "low": 10, "high": 35},
        "beatsCurrentShare": 0.97,
        "riskReasons": ["material"],
        "missBudget": None,
    }
    proposal.save()
    return proposal


@pytest.mark.django_db
def test_proposal_detail_page__replayed_impact__one_plain_sentence_first_and_each_figure_once(client, agent, approver):
    proposal = _replayed_proposal(agent)
    client.force_login(approver)

    html = client.get(reverse("proposal-detail", args=[proposal.pk])).content.decode()

    sentence = "Cuts about 650 false alarms a month and may let about 25 more real cases through."
    assert html.count(sentence) == 1
    assert html.index(sentence) < html.index("Risk: this change may raise missed signals.") < html.index("False alarms")
    assert html.count("may raise missed signals") == 1
    assert html.count("likely range -650 to +560") == 0 and html.count("likely range -650 to -560") == 1
    assert html.count("likely range +10 to +35") == 1
    assert "The replay finds more real cases missed than chance explains." in html
    assert "bootstrap" not in html and "90% interval" not in html and "+23 [+10 to +35]" not in html
    assert "did better than today's in 97 % of the replays" in html


@pytest.mark.django_db
def test_proposal_detail_page__hand_made__its_own_words_no_sentence_made_up(client, agent, approver, approver2):
    from approvals.services import proposal_create_manual

    proposal = proposal_create_manual(
        agent=agent,
        threshold_name="flag_threshold",
        proposed_value=0.64,
        rationale="seasonal",
        actor=approver2,
        now=NOW,
    )
    client.force_login(approver)

    html = client.get(reverse("proposal-detail", args=[proposal.pk])).content.decode()

    assert 'data-testid="plain-impact"' not in html
    assert html.count(proposal.expected_impact) == 1
