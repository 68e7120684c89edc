from datetime import timedelta

import pytest
from rest_framework.test import APIClient

from tests.approvals.conftest import log_responded, sign_in
from tests.factories import NOW, make_agent, make_proposal, user_with_role
from tuner.models import Proposal


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_approval_page__approver_accepts_in_chromium__agent_reads_new_version(browser_context, live_server):
    agent, key = make_agent()
    alice = user_with_role("approver", username="alice")
    ids = log_responded(agent, prefix="ev", n=6, errors=6, start=NOW - timedelta(days=2))
    proposal = make_proposal(agent, proposed=0.66, evidence_ids=ids, risk_flagged=True)
    agent_api = APIClient()
    agent_api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    before = agent_api.get("/api/v1/agents/triage/config")
    sign_in(browser_context, live_server, alice)
    page = browser_context.new_page()

    page.goto(f"/proposals/{proposal.pk}/")

    assert page.get_by_test_id("risk-flag").inner_text().startswith("Risk: this change may raise missed signals.")
    assert page.get_by_test_id("live-value").inner_text().startswith("0.6")
    page.wait_for_selector("#threshold-chart[data-rendered='true']")
    first_sample = page.get_by_test_id("sample-entry").first
    assert not first_sample.get_by_text("note on ev-0").is_visible()
    first_sample.locator("summary").click()
    assert first_sample.get_by_text("note on ev-0").is_visible()

    page.get_by_label("Accept").check()
    page.locator("textarea[name=rationale]").fill("the dismissal cluster is clear")
    page.get_by_role("button", name="Record decision").click()

    page.get_by_text("Accepted: flag_threshold is 0.66 in v2, live now.").wait_for()
    stored = Proposal.objects.get(pk=proposal.pk)
    assert stored.status == "accepted" and stored.decided_by == alice
    after = agent_api.get("/api/v1/agents/triage/config")
    assert after.json()["version"] == 2 and after.json()["thresholds"]["flag_threshold"] == 0.66
    assert after["ETag"] != before["ETag"]


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_admin_proposal_page__admin_modifies_in_chromium__value_live(browser_context, live_server):
    agent, _ = make_agent()
    root = user_with_role("admin", username="root")
    proposal = make_proposal(agent, proposed=0.66)
    sign_in(browser_context, live_server, root)
    page = browser_context.new_page()

    page.goto(f"/admin/tuner/proposal/{proposal.pk}/change/")
    page.locator("input[name=decision][value=modify]").check()
    page.locator("input[name=value][form=decide-form]").fill("0.64")
    page.locator("textarea[name=rationale]").fill("a smaller step")
    page.get_by_role("button", name="Record decision").click()

    page.get_by_text(f"Proposal #{proposal.pk} modified.").wait_for()
    stored = Proposal.objects.get(pk=proposal.pk)
    assert (stored.status, stored.decided_value, stored.decided_by) == ("modified", 0.64, root)
