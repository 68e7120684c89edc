"""The proposal's page in Chromium: the shadow's forward evidence beside the replay, a canary started from the
decision form with the keyboard, and aborted by another approver from its card."""

import os
from datetime import timedelta
from pathlib import Path

import pytest

from auditlog.services import BulkResponse, decision_log_batch, response_record_bulk
from rollouts.models import Canary
from tests.approvals.conftest import iso, sign_in
from tests.factories import NOW, entry, make_agent, make_proposal, user_with_role
from thresholds.models import ConfigVersion
from tuner.models import Proposal


def shadow_decisions(agent_id: str, proposal_id: int, n: int, dismissed: int) -> None:
    """``n`` flagged decisions the candidate would have auto-resolved; ``dismissed`` of them answered dismiss."""
    bodies: list[object] = [
        entry(
            agent_id,
            id=f"sh-{i}",
            timestamp=iso(NOW + timedelta(minutes=i)),
            decision={"confidence": 0.62, "shadowAction": "auto-resolve", "shadowProposalId": proposal_id},
        )
        for i in range(n)
    ]
    assert {r.status for r in decision_log_batch(entries=bodies, now=NOW + timedelta(days=1))} == {"created"}
    raw: dict[str, object] = {"action": "dismiss", "respondedAt": iso(NOW + timedelta(days=1))}
    items = [BulkResponse(entry_id=f"sh-{i}", raw=raw, responder_id="rita") for i in range(dismissed)]
    response_record_bulk(items=items, now=NOW + timedelta(days=1))


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_proposal_page__shadow_evidence_then_a_canary_started_and_aborted_in_chromium(browser_context, live_server):
    agent, _ = make_agent()
    alice = user_with_role("approver", username="alice")
    bob = user_with_role("approver", username="bob")
    proposal = make_proposal(agent, proposed=0.66)
    shadow_decisions(agent.agent_id, proposal.pk, n=12, dismissed=9)
    sign_in(browser_context, live_server, alice)
    page = browser_context.new_page()
    page.set_viewport_size({"width": 1400, "height": 1000})

    page.goto(f"/proposals/{proposal.pk}/")
    shadow = page.get_by_test_id("shadow-evidence")
    assert "would have decided 12 of them differently" in shadow.inner_text()
    assert (
        "12 decisions taken as flag would have been auto-resolve; reviewers dismissed 9, 3 open" in shadow.inner_text()
    )

    # With the keyboard: the canary option, its share, then the rationale and the button.
    page.get_by_label("Accept").check()
    page.get_by_label("As a canary first").focus()
    page.keyboard.press("Space")
    page.get_by_label("Canary share in per cent").fill("25")
    page.get_by_label("Canary days").fill("3")
    page.locator("textarea[name=rationale]").fill("try it on a quarter of sessions first")
    page.get_by_role("button", name="Record decision").focus()
    page.keyboard.press("Enter")

    page.get_by_text("Canary started: flag_threshold is 0.66 for 25% of sessions (v2)").wait_for()
    card = page.get_by_test_id("canary")
    assert "running" in card.inner_text() and "runs until" in page.get_by_test_id("canary-summary").inner_text()
    if os.environ.get("LOOPSITE_SCREENSHOTS"):
        page.screenshot(path=str(Path(os.environ["LOOPSITE_SCREENSHOTS"]) / "canary.png"), full_page=True)
    canary = Canary.objects.get(proposal=proposal)
    assert (canary.share, canary.state) == (0.25, "running")
    assert Proposal.objects.get(pk=proposal.pk).status == "canary"

    sign_in(browser_context, live_server, bob)
    page.goto(f"/proposals/{proposal.pk}/#canary")
    page.locator("#canary textarea[name=rationale]").fill("the fraud team asked to wait")
    page.get_by_role("button", name="Abort: back to v1's value").click()
    page.get_by_text("Canary aborted: every session is back on the earlier value (v3).").wait_for()
    canary.refresh_from_db()
    assert canary.state == "aborted" and canary.ended_label == "bob"
    live = ConfigVersion.objects.get(agent=agent, is_live=True)
    assert live.number == 3 and live.values["flag_threshold"] == 0.6
