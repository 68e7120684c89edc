"""Approvers sign off in the admin: staff with the approvers group's view permissions, scoped to their agents.

It used to be that `create_user --role approver` made a non-staff user whom /admin/ sent to the sign-in page.
"""

import html
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client

from people.services import user_create
from tests.approvals.conftest import sign_in
from tests.factories import make_agent, make_proposal, user_with_role
from thresholds.models import ConfigVersion
from tuner.models import Proposal


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_create_user__approver__staff_who_opens_the_admin_and_a_reviewer_who_cannot() -> None:
    call_command("create_user", "alice", "--role", "approver", "--password", "a-long-passphrase-9", stdout=StringIO())
    reviewer, _ = user_create(username="rita", role="reviewer", password="another-passphrase-7")
    from django.contrib.auth import get_user_model

    alice = get_user_model().objects.get(username="alice")
    assert alice.is_staff and not alice.is_superuser

    index = signed_in(alice).get("/admin/")
    assert index.status_code == 200
    page = index.content.decode()
    assert "loopsite administration" in page and 'href="/proposals/"' in page and 'href="/queue/"' in page
    assert "/admin/tuner/proposal/" in page and "/admin/approvals/auditevent/" in page
    assert "/admin/thresholds/configversion/" in page
    assert "/admin/people/personaltoken/" not in page and "/admin/auth/user/" not in page

    refused = signed_in(reviewer).get("/admin/")
    assert refused.status_code == 302 and refused["Location"].startswith("/admin/login/")


@pytest.mark.django_db
def test_admin__approver_joining_the_group__becomes_staff() -> None:
    user = user_with_role("reviewer", username="bob")
    assert not user.is_staff
    from people.roles import Role, role_groups_ensure

    user.groups.add(role_groups_ensure()[Role.APPROVER])
    user.refresh_from_db()
    assert user.is_staff


@pytest.mark.django_db
def test_admin_proposals__approver__sees_only_the_agents_they_may_decide(approver: Any) -> None:
    mine, _ = make_agent("triage")
    theirs, _ = make_agent("fraud")
    open_to_all, _ = make_agent("leads")
    other = user_with_role("approver", username="carol")
    mine.approvers.add(approver)
    theirs.approvers.add(other)
    proposals = {a.agent_id: make_proposal(a) for a in (mine, theirs, open_to_all)}

    listing = signed_in(approver).get("/admin/tuner/proposal/")

    assert listing.status_code == 200
    shown = {p.agent.agent_id for p in listing.context["cl"].result_list}
    assert shown == {"triage", "leads"}
    opened = signed_in(approver).get(f"/admin/tuner/proposal/{proposals['fraud'].pk}/change/")  # by its link
    assert opened.status_code == 200 and 'id="decide-form"' not in opened.content.decode()
    assert "alice is not one of fraud's designated approvers (carol)" in html.unescape(opened.content.decode())


@pytest.mark.django_db
def test_admin__approver__config_versions_agents_and_audit_read_only(approver: Any) -> None:
    agent, _ = make_agent("triage")
    client = signed_in(approver)
    version = ConfigVersion.objects.get(agent=agent)

    assert client.get(f"/admin/thresholds/configversion/{version.pk}/change/").status_code == 200
    page = client.get(f"/admin/thresholds/agent/{agent.pk}/change/")
    assert page.status_code == 200 and 'name="review_sample_rate"' not in page.content.decode()  # read-only
    changed = client.post(f"/admin/thresholds/agent/{agent.pk}/change/", {"review_sample_rate": "0.9"})
    assert changed.status_code == 403
    agent.refresh_from_db()
    assert agent.review_sample_rate != 0.9
    assert client.get("/admin/approvals/auditevent/").status_code == 200
    assert client.get("/admin/people/personaltoken/").status_code == 403


@pytest.mark.django_db
def test_admin_agent_actions__lock_and_rollback__open_their_pages(approver: Any) -> None:
    agent, _ = make_agent("triage")
    client = signed_in(approver)
    for action, page in (("open_lock_page", "/lock/triage/"), ("open_rollback_page", "/rollback/triage/")):
        response = client.post("/admin/thresholds/agent/", {"action": action, "_selected_action": [agent.pk]})
        assert response.status_code == 302 and response["Location"] == page


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_admin__approver_decides_a_proposal_in_chromium__value_live(browser_context: Any, live_server: Any) -> None:
    agent, _ = make_agent()
    alice = user_with_role("approver", username="alice")
    agent.approvers.add(alice)
    proposal = make_proposal(agent, proposed=0.66)
    sign_in(browser_context, live_server, alice)
    page = browser_context.new_page()

    page.goto("/admin/")
    page.locator("a[href='/admin/tuner/proposal/']").first.click()
    page.get_by_role("link", name=str(proposal.pk), exact=True).click()
    page.locator("input[name=decision][value=accept]").check()
    page.locator("textarea[name=rationale]").fill("the dismissals are clear")
    page.get_by_role("button", name="Record decision").click()

    page.get_by_text(f"Proposal #{proposal.pk} accepted.").wait_for()
    stored = Proposal.objects.get(pk=proposal.pk)
    assert (stored.status, stored.decided_by) == ("accepted", alice)
    live = ConfigVersion.objects.get(agent=agent, is_live=True)
    assert live.values["flag_threshold"] == 0.66 and live.approved_by == alice
