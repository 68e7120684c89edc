"""The queue's order (oldest or newest first, kept on the reviewer's session), its date filter, the header figures
under the filters, and the response rate of the tuner's window."""

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from auditlog.selectors import QueueStats
from tests.factories import make_agent, user_with_role
from tests.web.conftest import HX, log_pending, signed_in

pytestmark = pytest.mark.django_db


def listed(response: Any) -> list[str]:
    return [item.entry_id for item in response.context["page"].items]


def test_queue_order__newest_first__kept_on_the_session_until_changed(reviewer: Any, agent: Any) -> None:
    ids = log_pending(agent.agent_id, 3)
    client = signed_in(reviewer)
    assert listed(client.get("/queue/")) == ids
    assert listed(client.get("/queue/?sort=newest")) == ids[::-1]
    assert listed(client.get("/queue/")) == ids[::-1]
    assert client.session["queue_sort"] == "newest"
    # an answer re-renders the list in the same order
    body = client.post("/queue/respond/", headers=HX, data={"entry_id": ids[2], "response": "approve"})
    assert listed(body) == [ids[1], ids[0]]
    assert listed(client.get("/queue/?sort=oldest")) == ids[:2]
    assert listed(client.get("/queue/?sort=sideways")) == ids[:2]  # an unknown order changes nothing
    # another reviewer's session has its own
    other = signed_in(user_with_role("reviewer", username="rick"))
    assert listed(other.get("/queue/")) == ids[:2]


def test_queue_order__newest_first__pages_follow_the_cursor_downwards(reviewer: Any, agent: Any) -> None:
    ids = log_pending(agent.agent_id, 30)
    client = signed_in(reviewer)
    first = client.get("/queue/?sort=newest")
    assert listed(first) == ids[::-1][:25]
    second = client.get(first.context["next_url"])
    assert listed(second) == ids[::-1][25:]
    assert second.context["next_url"] == ""


def test_queue_dates__from_and_to__inclusive_utc_days_and_kept_in_links(reviewer: Any, agent: Any) -> None:
    old = log_pending(agent.agent_id, 2, ago=timedelta(days=10))
    recent = log_pending(agent.agent_id, 2, ago=timedelta(minutes=5))
    client = signed_in(reviewer)
    today = (timezone.now() - timedelta(minutes=5)).date()  # the recent ones' day, even just after midnight
    old_day = (timezone.now() - timedelta(days=10)).date()
    response = client.get(f"/queue/?from={today.isoformat()}")
    assert listed(response) == recent
    assert response.context["filter_query"] == {"from": today.isoformat()}
    around_old = f"from={(old_day - timedelta(days=1)).isoformat()}&to={(old_day + timedelta(days=1)).isoformat()}"
    assert listed(client.get(f"/queue/?{around_old}")) == old
    assert listed(client.get("/queue/?from=not-a-date")) == old + recent
    html = response.content.decode()
    assert f'name="from" value="{today.isoformat()}"' in html
    assert f'hx-get="/queue/stats/?from={today.isoformat()}"' in html  # the header follows the filters


def test_queue_stats__follow_the_filters(reviewer: Any, agent: Any) -> None:
    make_agent("fraud")
    log_pending(agent.agent_id, 3, ago=timedelta(days=10))
    log_pending("fraud", 2, ago=timedelta(minutes=5))
    client = signed_in(reviewer)
    assert client.get("/queue/stats/").context["stats"].pending == 5
    assert client.get("/queue/stats/?agent=fraud").context["stats"].pending == 2
    since = (timezone.now() - timedelta(days=2)).date().isoformat()
    response = client.get(f"/queue/stats/?from={since}")
    assert response.context["stats"].pending == 2
    assert "pending review with these filters" in response.content.decode()
    # an answer's re-rendered header too
    body = client.post(
        "/queue/respond/",
        headers=HX,
        data={
            "entry_id": listed(client.get("/queue/?agent=fraud"))[0],
            "entry_agent": "fraud",
            "response": "approve",
            "agent": "fraud",
        },
    )
    assert body.context["stats"].pending == 1


def test_queue_stats__answers_to_an_earlier_weeks_backlog__raise_the_rate(reviewer: Any, agent: Any) -> None:
    """What a newcomer saw: answering the backlog (decisions of earlier weeks) left the figure at 0 %."""
    ids = log_pending(agent.agent_id, 4, ago=timedelta(days=9))
    client = signed_in(reviewer)
    assert 'data-stat="week-rate">0 %<' in client.get("/queue/stats/").content.decode()
    html = client.post("/queue/respond/", headers=HX, data={"entry_id": ids[:3], "response": "approve"}).content
    assert 'data-stat="week-rate">75 %<' in html.decode()
    assert 'data-stat="week-rate">75 %<' in client.get("/queue/stats/").content.decode()


def test_queue_stats__older_than_the_tuners_window__not_counted(reviewer: Any, agent: Any) -> None:
    log_pending(agent.agent_id, 2, ago=timedelta(weeks=5))
    ids = log_pending(agent.agent_id, 1, ago=timedelta(days=1))
    client = signed_in(reviewer)
    client.post("/queue/respond/", headers=HX, data={"entry_id": ids, "response": "approve"})
    stats = client.get("/queue/stats/").context["stats"]
    assert (stats.window_responded, stats.window_queued) == (1, 1)


@pytest.mark.parametrize(
    ("responded", "queued", "shown"),
    [(0, 3000, "0"), (12, 3000, "0.4"), (1, 150, "0.7"), (3, 100, "3"), (1, 10, "10"), (2, 3, "67"), (0, 0, "–")],
)
def test_queue_stats__percent__one_decimal_below_ten(responded: int, queued: int, shown: str) -> None:
    stats = QueueStats(
        pending=0, done_today=0, window_queued=queued, window_responded=responded, window_weeks=4, warn_below=0.6
    )
    assert stats.week_percent == shown
