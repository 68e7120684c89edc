from datetime import timedelta

import pytest

from approvals.notifications import digest_send, proposals_notify
from approvals.services import proposal_create_manual, proposal_decide
from tests.approvals.conftest import log_responded, make_run
from tests.factories import NOW, make_proposal, user_with_role


@pytest.mark.django_db
def test_proposals_notify__cycle_with_proposals__one_email_to_designated_approvers_with_links(
    agent, designated, mailoutbox
):
    user_with_role("approver", username="not-designated")
    run = make_run(agent)
    first = make_proposal(agent, run=run, proposed=0.66, risk_flagged=True)
    second = make_proposal(agent, run=run, threshold="escalate_threshold", proposed=0.8, rank=2)

    sent = proposals_notify(run_id=run.pk)

    assert sent == 1 and len(mailoutbox) == 1
    mail = mailoutbox[0]
    assert sorted(mail.to) == ["alice@example.com", "bob@example.com"]
    assert mail.subject == "[loopsite] triage: 2 threshold proposals to decide"
    assert "1. flag_threshold: 0.6 -> 0.66 (increase, high confidence, 0 log entries)" in mail.body
    assert "RISK (may raise missed signals)" in mail.body
    assert "2. escalate_threshold: 0.85 -> 0.8" in mail.body
    assert f"http://127.0.0.1:8000/proposals/{first.pk}/" in mail.body
    assert f"http://127.0.0.1:8000/proposals/{second.pk}/" in mail.body
    assert "dismissals cluster above 0.6" in mail.body


@pytest.mark.django_db
def test_proposals_notify__no_designated_approvers__every_approver_told(agent, approver, reviewer, mailoutbox):
    run = make_run(agent)
    make_proposal(agent, run=run)

    proposals_notify(run_id=run.pk)

    assert mailoutbox[0].to == ["alice@example.com"]


@pytest.mark.django_db
def test_proposals_notify__run_without_pending_proposals__no_email(agent, designated, mailoutbox):
    assert proposals_notify(run_id=make_run(agent).pk) == 0
    assert mailoutbox == []


@pytest.mark.django_db
def test_proposal_create_manual__other_approvers_emailed_after_commit(
    agent, designated, django_capture_on_commit_callbacks, mailoutbox
):
    with django_capture_on_commit_callbacks(execute=True):
        proposal_create_manual(
            agent=agent,
            threshold_name="flag_threshold",
            proposed_value=0.55,
            rationale="quiet",
            actor=designated[0],
            now=NOW,
        )

    assert [m.to for m in mailoutbox] == [["bob@example.com"]]
    assert "manual proposal for flag_threshold" in mailoutbox[0].subject


@pytest.mark.django_db
def test_digest_send__last_week__four_rates_with_counts(agent, designated, mailoutbox):
    last_monday = NOW - timedelta(days=7)  # NOW is a Monday
    log_responded(agent, prefix="wk", n=40, errors=10, start=last_monday + timedelta(hours=1))
    log_responded(agent, prefix="esc", n=10, errors=5, start=last_monday + timedelta(days=2), error_action="escalate")
    accepted = make_proposal(agent, now=last_monday)
    rejected = make_proposal(agent, threshold="escalate_threshold", proposed=0.8, now=last_monday)
    proposal_decide(
        proposal=accepted, actor=designated[0], decision="accept", rationale="y", now=last_monday + timedelta(days=1)
    )
    proposal_decide(
        proposal=rejected, actor=designated[0], decision="reject", rationale="n", now=last_monday + timedelta(days=1)
    )

    digest_send(agent=agent, now=NOW)

    mail = mailoutbox[0]
    assert mail.subject == "[loopsite] triage: weekly digest, week of 2026-02-23"
    assert sorted(mail.to) == ["alice@example.com", "bob@example.com"]
    assert "Dismissal rate: 20.0% (10 of 50 responses; the week before: n/a)" in mail.body
    assert "Escalation rate: 10.0% (5 of 50 responses" in mail.body
    assert "Response rate: 100.0% (50 of 50 queued" in mail.body
    assert "Acceptance rate: 50.0% (1 of 2 decided" in mail.body
