"""The approval page shows the clusters behind a proposal beside its chart: a plain sentence, the size, the
features that set each apart and sample ids linked to their decision pages."""

import os
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.urls import reverse

from tests.approvals.conftest import log_responded, sign_in
from tests.factories import NOW, make_proposal, user_with_role
from thresholds.models import Agent
from tuner.models import Proposal


def with_clusters(agent: Agent, ids: list[str]) -> Proposal:
    proposal = make_proposal(agent, proposed=0.66, evidence_ids=ids)
    proposal.clusters = [
        {
            "kind": "dismiss",
            "label": "amount_score high, night high",
            "size": 38 - 5 * n,
            "share": 0.4 - 0.1 * n,
            "confidenceRange": [0.6, 0.65 + 0.01 * n],
            "distinguishingFeatures": [
                {"feature": "amount_score", "effect": 1.8},
                {"feature": "night", "effect": 1.2},
            ]
            if n == 0
            else [{"feature": f"f{n}", "effect": -0.9}],
            "rules": [],
            "sampleEntryIds": ids[n : n + 6],
        }
        for n in range(4)
    ]
    proposal.clusters[1]["label"] = "f1 low"
    proposal.clusters[2]["label"] = "f2 low"
    proposal.clusters[3]["label"] = "f3 low, the fourth"
    proposal.save(update_fields=["clusters"])
    return proposal


@pytest.mark.django_db
def test_proposal_detail_page__clusters__top_three_beside_the_chart_with_linked_sample_ids(
    client: Any, agent: Agent, approver: Any
) -> None:
    ids = log_responded(agent, prefix="ev", n=10, errors=10, start=NOW - timedelta(days=2))
    proposal = with_clusters(agent, ids)
    client.force_login(approver)

    with time_machine.travel(NOW + timedelta(hours=1), tick=False):
        html = client.get(reverse("proposal-detail", args=[proposal.pk])).content.decode()

    panel = html.split('data-testid="proposal-clusters"')[1].split("</section>")[0]
    assert html.index('id="threshold-chart"') < html.index('data-testid="proposal-clusters"') < html.index("</aside>")
    assert "38 dismissals at 0.60-0.65 confidence: amount_score high, night high" in panel
    assert panel.count('data-testid="proposal-cluster"') == 3 and "the fourth" not in panel
    assert "3 of 4" in panel
    assert "amount_score high (+1.8 sd)" in panel and "40 % of the window" in panel
    # Ids are unique per agent: every link names the proposal's agent.
    assert (
        f'href="/decisions/{ids[0]}/?agentId=triage"' in panel
        and f'href="/decisions/{ids[3]}/?agentId=triage"' in panel
    )
    assert "and 2 more" in panel  # six sample ids, four shown


@pytest.mark.django_db
def test_proposal_detail_page__no_cluster_in_the_band__says_so(client: Any, agent: Agent, approver: Any) -> None:
    proposal = make_proposal(agent, proposed=0.66)
    client.force_login(approver)

    html = client.get(reverse("proposal-detail", args=[proposal.pk])).content.decode()

    assert "No cluster of dismissals found by the tuner reaches into the band this move affects (0.6 to 0.66)" in html


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_approval_page__clusters_panel_in_chromium__sample_reached_by_keyboard(
    browser_context: Any, live_server: Any
) -> None:
    from tests.factories import make_agent

    agent, _ = make_agent()
    alice = user_with_role("approver", username="alice")
    ids = log_responded(agent, prefix="ev", n=10, errors=10, start=NOW - timedelta(days=2))
    proposal = with_clusters(agent, ids)
    sign_in(browser_context, live_server, alice)
    page = browser_context.new_page()
    page.set_viewport_size({"width": 1280, "height": 1000})

    page.goto(f"/proposals/{proposal.pk}/")
    page.wait_for_selector("#threshold-chart[data-rendered='true']")

    panel = page.get_by_test_id("proposal-clusters")
    assert panel.is_visible()
    assert panel.get_by_role("heading", name="Clusters this change addresses").is_visible()
    assert page.get_by_test_id("proposal-cluster").count() == 3
    assert (
        page.get_by_test_id("proposal-cluster")
        .first.inner_text()
        .startswith("38 dismissals at 0.60-0.65 confidence: amount_score high, night high")
    )
    # Beside the chart, not below it: the panel's left edge lines up with the chart's.
    chart_box = page.locator("#threshold-chart").bounding_box()
    panel_box = panel.bounding_box()
    assert chart_box and panel_box and abs(chart_box["x"] - panel_box["x"]) < 2 and panel_box["y"] > chart_box["y"]
    if os.environ.get("CLUSTER_SCREENSHOT"):
        page.screenshot(path=os.environ["CLUSTER_SCREENSHOT"], full_page=True)

    first = page.get_by_test_id("cluster-sample").first
    first.focus()
    assert first.evaluate("el => el === document.activeElement")
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/decisions/{ids[0]}/?agentId=triage")
