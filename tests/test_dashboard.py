"""The weekly metrics (selector and API) and the dashboard pages."""

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.test import Client

from approvals.services import proposal_create_manual, proposal_decide
from auditlog.services import decision_log_batch, response_record
from tests.conftest import client_for
from tests.factories import NOW, entry, make_agent, user_with_role
from thresholds.metrics import threshold_histories, weekly_metrics

pytestmark = pytest.mark.django_db

MONDAY = NOW.replace(hour=0)  # NOW is a Monday


@pytest.fixture(autouse=True)
def _clock() -> Iterator[None]:
    with time_machine.travel(NOW + timedelta(days=9), tick=False):
        yield


def _log(agent: Any, *, day: int, action: str, n: int, prefix: str, confidence: float = 0.72) -> list[str]:
    ids = [f"{prefix}-{i}" for i in range(n)]
    at = (MONDAY + timedelta(days=day, hours=1)).isoformat()
    decision_log_batch(
        entries=[
            entry(id=i, timestamp=at, decision={"action": action, "confidence": confidence, "thresholdUsed": 0.6})
            for i in ids
        ],
        now=MONDAY + timedelta(days=day, hours=2),
    )
    return ids


def _respond(ids: list[str], action: str, *, day: int, **extra: Any) -> None:
    for entry_id in ids:
        response_record(
            entry_id=entry_id,
            raw={"action": action, **extra},
            responder_id="rita",
            now=MONDAY + timedelta(days=day, hours=5),
        )


@pytest.fixture
def two_weeks(agent: Any) -> Any:
    """Week 1: 10 flags (6 dismissed, 2 approved, 1 escalated, 1 modified) and 4 auto-resolves; week 2: 5 flags."""
    flags = _log(agent, day=1, action="flag", n=10, prefix="w1")
    _respond(flags[:6], "dismiss", day=2)
    _respond(flags[6:8], "approve", day=2)
    _respond(flags[8:9], "escalate", day=2)
    _respond(flags[9:], "modify", day=2, modifiedAction="escalate")
    _log(agent, day=2, action="auto-resolve", n=4, prefix="w1ar", confidence=0.2)
    week2 = _log(agent, day=8, action="flag", n=5, prefix="w2")
    _respond(week2[:1], "approve", day=8)
    return agent


def test_weekly_metrics__two_weeks__counts_and_rates_per_iso_week(two_weeks: Any) -> None:
    rows = weekly_metrics(agent=two_weeks, weeks=2, now=NOW + timedelta(days=9))
    first, second = rows
    assert first.week_start == MONDAY.date() and second.week_start == MONDAY.date() + timedelta(days=7)
    assert (first.decisions, first.responses) == (14, 10)
    assert first.queued >= 10
    assert (first.dismissal_rate, first.approval_rate, first.escalation_rate, first.modification_rate) == (
        0.6,
        0.2,
        0.1,
        0.1,
    )
    assert first.response_rate == round(10 / first.queued, 4)
    assert (second.decisions, second.responses, second.response_rate, second.dismissal_rate) == (5, 1, 0.2, 0.0)
    assert first.config_version == 1


def test_weekly_metrics__week_without_decisions__zero_counts_and_no_rates(agent: Any) -> None:
    (row,) = weekly_metrics(agent=agent, weeks=1, now=NOW)
    assert (row.decisions, row.responses, row.response_rate, row.dismissal_rate) == (0, 0, None, None)


def test_weekly_metrics__accepted_proposal__counted_in_its_week_with_the_new_version(agent: Any) -> None:
    staff = user_with_role("admin", username="ops")
    alice = user_with_role("approver", username="alice")
    at = MONDAY + timedelta(days=8, hours=3)
    proposal = proposal_create_manual(
        agent=agent, threshold_name="flag_threshold", proposed_value=0.65, rationale="fewer alerts", actor=staff, now=at
    )
    proposal_decide(proposal=proposal, actor=alice, decision="accept", rationale="fine", now=at)
    rows = weekly_metrics(agent=agent, weeks=2, now=NOW + timedelta(days=9))
    assert [(r.proposals, r.accepted, r.decided, r.config_version) for r in rows] == [(0, 0, 0, 1), (1, 1, 1, 2)]
    assert rows[1].acceptance_rate == 1.0
    (flag,) = [h for h in threshold_histories(agent=agent) if h.name == "flag_threshold"]
    assert [e.kind for e in flag.events] == ["initial", "proposed", "accepted"]
    assert flag.events[-1].who == "alice" and flag.events[-1].proposal_id == proposal.pk
    assert flag.current == 0.65


def test_metrics_api__reviewer__one_row_a_week_in_the_contracts_names(two_weeks: Any, reviewer: Any) -> None:
    response = client_for(reviewer).get("/api/v1/agents/triage/metrics/weekly?weeks=3")
    assert response.status_code == 200
    body = response.json()
    assert body["agentId"] == "triage"
    assert [r["weekStart"] for r in body["results"]] == ["2026-02-23", "2026-03-02", "2026-03-09"]
    week1 = body["results"][1]
    for name in (
        "weekStart",
        "decisions",
        "responses",
        "responseRate",
        "dismissalRate",
        "escalationRate",
        "modificationRate",
        "approvalRate",
        "proposals",
        "accepted",
        "rollbacks",
        "configVersion",
    ):
        assert name in week1
    assert (week1["decisions"], week1["dismissalRate"]) == (14, 0.6)


def test_metrics_api__agent_key__403(two_weeks: Any, agent_client: Any) -> None:
    assert agent_client.get("/api/v1/agents/triage/metrics/weekly").status_code == 403


def test_metrics_api__anonymous__401(two_weeks: Any) -> None:
    from rest_framework.test import APIClient

    assert APIClient().get("/api/v1/agents/triage/metrics/weekly").status_code == 401


def test_metrics_api__bad_weeks__400_naming_the_field(two_weeks: Any, approver: Any) -> None:
    response = client_for(approver).get("/api/v1/agents/triage/metrics/weekly?weeks=0")
    assert response.status_code == 400
    assert "weeks" in str(response.json())


def test_metrics_api__unknown_agent__404(approver: Any) -> None:
    assert client_for(approver).get("/api/v1/agents/nope/metrics/weekly").status_code == 404


@pytest.mark.parametrize("role", ["reviewer", "approver", "admin"])
def test_dashboard__every_role__lists_agents_and_opens_the_agent_page(two_weeks: Any, role: str) -> None:
    client = Client()
    client.force_login(user_with_role(role))
    index = client.get("/dashboard/")
    assert index.status_code == 200
    assert b'href="/dashboard/triage/"' in index.content
    page = client.get("/dashboard/triage/?weeks=4")
    assert page.status_code == 200
    text = page.content.decode()
    for heading in ("Dismissal rate", "Escalation rate", "Response rate", "Proposal acceptance rate"):
        assert heading in text
    assert "vendor/chart.umd.min.js" in text
    assert "flag_threshold" in text and "escalate_threshold" in text
    assert '"dismissalRate": [' in text


def test_dashboard__in_the_navigation(two_weeks: Any, reviewer: Any) -> None:
    client = Client()
    client.force_login(reviewer)
    assert b'href="/dashboard/"' in client.get("/dashboard/").content


def test_dashboard__anonymous__sent_to_sign_in(two_weeks: Any) -> None:
    response = Client().get("/dashboard/triage/")
    assert response.status_code == 302 and "login" in response["Location"]


def test_dashboard__user_without_role__403(two_weeks: Any) -> None:
    from django.contrib.auth import get_user_model

    client = Client()
    client.force_login(get_user_model().objects.create_user(username="nobody", password="x-very-long-pw"))
    assert client.get("/dashboard/").status_code == 403


def test_dashboard_agent__unknown__404(reviewer: Any) -> None:
    client = Client()
    client.force_login(reviewer)
    assert client.get("/dashboard/nope/").status_code == 404


def test_dashboard_agent__change_shows_its_proposal_and_approver(agent: Any) -> None:
    staff = user_with_role("admin", username="ops")
    alice = user_with_role("approver", username="alice")
    at = MONDAY + timedelta(days=8, hours=3)
    proposal = proposal_create_manual(
        agent=agent, threshold_name="flag_threshold", proposed_value=0.66, rationale="fewer", actor=staff, now=at
    )
    proposal_decide(proposal=proposal, actor=alice, decision="accept", rationale="agreed", now=at)
    client = Client()
    client.force_login(alice)
    text = client.get("/dashboard/triage/").content.decode()
    assert f'href="/proposals/{proposal.pk}/"' in text
    assert "0.600 → 0.660" in text and "alice" in text


def test_dashboard_agent__latest_cycles_clusters__new_growing_shrinking_against_the_cycle_before(
    agent: Any, reviewer: Any
) -> None:
    from tuner.models import Cluster, TunerRun

    def run(cycle_days_ago: int, clusters: list[tuple[str, str, int, list[dict[str, Any]]]]) -> TunerRun:
        at = MONDAY - timedelta(days=cycle_days_ago)
        done = TunerRun.objects.create(
            agent=agent,
            cycle=at.date(),
            status=TunerRun.Status.DONE,
            window_start=at - timedelta(weeks=4),
            window_end=at,
            output={"proposals": [], "summary": "s", "systemHealth": "healthy"},
            created_at=at,
        )
        for kind, label, size, features in clusters:
            Cluster.objects.create(
                run=done,
                kind=kind,
                label=label,
                size=size,
                share=0.3,
                thresholds=["flag_threshold"],
                confidence_min=0.6,
                confidence_max=0.68,
                distinguishing_features=features,
                sample_entry_ids=[f"{label[:5]}-1"],
            )
        return done

    night = [{"feature": "night", "effect": 1.5}]
    amount = [{"feature": "amount", "effect": 1.1}]
    run(
        7,
        [
            ("dismiss", "night high", 20, night),
            ("escalate", "amount high", 50, amount),
            ("dismiss", "weekend high", 9, [{"feature": "weekend", "effect": 1.0}]),
        ],
    )
    run(
        0,
        [
            ("dismiss", "night high", 38, night),
            ("escalate", "amount high", 25, amount),
            ("dismiss", "country low", 12, [{"feature": "country", "effect": -1.0}]),
            ("escalate", "amount high, vip high", 7, [*amount, {"feature": "vip", "effect": 0.8}]),
        ],
    )
    client = Client()
    client.force_login(reviewer)

    html = client.get(f"/dashboard/{agent.agent_id}/").content.decode()

    panel = html.split('data-testid="cluster-trends"')[1].split("</section>")[0]
    rows = panel.split('data-testid="cluster-row"')[1:]
    assert [r.split('data-testid="cluster-trend">')[1].split("<")[0] for r in rows] == [
        "growing",
        "shrinking",
        "new",
        "new",
    ]
    assert "38 dismissals at 0.60-0.68 confidence: night high" in rows[0] and "(was 20)" in rows[0]
    assert "25 escalations" in rows[1] and "(was 50)" in rows[1]
    assert "country low" in rows[2] and "amount high, vip high" in rows[3]
    assert f'href="/decisions/night-1/?agentId={agent.agent_id}"' in rows[0]
    assert "No longer seen: 9 dismissals at 0.60-0.68 confidence: weekend high" in panel


def _chart(html: str) -> Any:
    import json

    return json.loads(html.split('id="dashboard-data" type="application/json">')[1].split("</script>")[0])


def test_dashboard_agent__unfinished_week__kept_off_the_lines_and_given_apart_as_so_far(two_weeks: Any) -> None:
    client = Client()
    client.force_login(user_with_role("reviewer"))

    html = client.get("/dashboard/triage/?weeks=4").content.decode()

    chart = _chart(html)
    this_week = (MONDAY + timedelta(days=7)).date().isoformat()
    assert chart["weeks"][-1] == chart["partialWeek"] == this_week
    # week 1: 10 queued flags, all answered; this week: 1 of 5 so far, which is no drop to 20 %
    assert chart["series"]["responseRate"][-2:] == [100.0, None]
    assert chart["soFar"]["responseRate"] == 20.0
    assert chart["series"]["dismissalRate"][-2] == 60.0 and chart["soFar"]["dismissalRate"] == 0.0
    assert f'{this_week} <span class="muted">(so far)</span>' in html


def test_dashboard_agent__week_selector__marks_the_range_shown(two_weeks: Any) -> None:
    client = Client()
    client.force_login(user_with_role("reviewer"))

    html = client.get("/dashboard/triage/?weeks=8").content.decode()

    choices = html.split('<nav class="week-choices"')[1].split("</nav>")[0]
    assert choices.count('aria-current="page"') == 1
    assert '<a href="?weeks=8" aria-current="page" class="selected">8</a>' in html
    assert "Showing the last 8 weeks, from the week of" in html
    assert len(_chart(html)["weeks"]) == 8


def test_dashboard_agent__new_agent_without_decisions__no_decisions_yet_and_no_verdict(db: None) -> None:
    from tests.approvals.conftest import make_run

    fresh, _ = make_agent("fresh")
    make_run(fresh, now=MONDAY)  # its verdict ("needs-attention") on nothing must not read as one
    client = Client()
    client.force_login(user_with_role("reviewer"))

    html = client.get("/dashboard/fresh/").content.decode()
    index = client.get("/dashboard/").content.decode()

    assert html.count("No decisions yet.") == 1
    assert 'id="chart-dismissalRate"' not in html and 'data-testid="partial-week"' not in html
    assert '<span class="health health-no-data">no data</span>' in html
    assert "attention" not in html.split('data-testid="health"')[1].split("</p>")[0]
    fresh_row = index.split('href="/dashboard/fresh/"')[1].split("</tr>")[0]
    assert "no data" in fresh_row and "attention" not in fresh_row and "no finished week yet" in fresh_row


def test_dashboard_agent__decisions_but_no_cycle__baseline(two_weeks: Any) -> None:
    client = Client()
    client.force_login(user_with_role("reviewer"))

    html = client.get("/dashboard/triage/").content.decode()

    assert '<span class="health health-baseline">baseline</span>' in html and "no tuner cycle yet" in html


def test_dashboard__overview__each_agents_sparklines_and_pending_count(two_weeks: Any) -> None:
    from tests.factories import make_proposal

    make_proposal(two_weeks, proposed=0.66)
    client = Client()
    client.force_login(user_with_role("reviewer"))

    html = client.get("/dashboard/").content.decode()

    row = html.split('href="/dashboard/triage/"')[1].split("</tr>")[0]
    assert row.count('<polyline class="spark-dismissal"') == 1
    assert row.count('<polyline class="spark-escalation"') == 1
    # eight finished weeks, the last (week 1: 60 % dismissed, the top of the scale) at the right edge; the current
    # week is left out
    assert row.split('class="spark-dismissal" points="')[1].split('"')[0] == "120.0,2.0 120.0,2.0"
    assert "0 to 60 %" in row
    assert '<a href="/proposals/?agent=triage&status=pending">1</a>' in row
