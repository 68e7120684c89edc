from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from auditlog.claims import claim_acquire
from auditlog.models import Decision
from tests.factories import make_agent, user_with_role
from tests.web.conftest import log_pending, stored

pytestmark = pytest.mark.django_db

HX = {"HX-Request": "true"}  # what htmx sends; without it the respond view redirects (no-JavaScript path)


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_queue__anonymous__redirected_to_sign_in(pending: list[str]) -> None:
    response = Client().get("/queue/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=/queue/")


def test_home__signed_in__redirects_to_queue(reviewer: Any) -> None:
    response = signed_in(reviewer).get("/")
    assert response.status_code == 302 and response["Location"] == "/queue/"


def test_home__anonymous__redirects_to_sign_in(db: None) -> None:
    response = Client().get("/")
    assert response.status_code == 302 and response["Location"] == "/accounts/login/"


def test_queue__user_without_role__refused(pending: list[str]) -> None:
    nobody = user_with_role("reviewer", username="nobody")
    nobody.groups.clear()
    assert signed_in(nobody).get("/queue/").status_code == 403


def test_queue__reviewer__sees_pending_oldest_first_with_details(reviewer: Any, pending: list[str]) -> None:
    response = signed_in(reviewer).get("/queue/")
    html = response.content.decode()
    assert response.status_code == 200
    positions = [html.index(f'data-entry-id="{i}"') for i in pending]
    assert positions == sorted(positions)
    assert "amount far above the customer&#x27;s average" in html
    assert "flag_threshold" in html and "0.72" in html and "high_amount" in html
    # features largest first by absolute value
    assert html.index("amount_z") < html.index("night")


def test_queue__features__largest_absolute_value_first(reviewer: Any, agent: Any) -> None:
    log_pending(agent.agent_id, 1, context={"features": {"small": 0.1, "neg_big": -5.0, "mid": 2.0}})
    html = signed_in(reviewer).get("/queue/").content.decode()
    assert html.index("neg_big") < html.index(">mid<") < html.index("small")


def test_queue__filters__agent_action_confidence_rule(reviewer: Any, agent: Any) -> None:
    make_agent("fraud")
    triage = log_pending("triage", 1)
    fraud_low = log_pending("fraud", 1, decision={"confidence": 0.65}, context={"matchedRules": ["velocity"]})
    fraud_high = log_pending("fraud", 1, decision={"action": "escalate", "confidence": 0.9, "thresholdUsed": 0.85})
    client = signed_in(reviewer)

    def shown(query: str) -> set[str]:
        html = client.get("/queue/" + query).content.decode()
        return {i for i in triage + fraud_low + fraud_high if f'data-entry-id="{i}"' in html}

    assert shown("?agent=fraud") == set(fraud_low + fraud_high)
    assert shown("?action=escalate") == set(fraud_high)
    assert shown("?min=0.8&max=1") == set(fraud_high)
    assert shown("?max=0.7") == set(fraud_low)
    assert shown("?rule=velocity") == set(fraud_low)
    assert shown("?rule=high_amount") == set(triage + fraud_high)


def test_queue__keyset_pages__cover_every_item_once(reviewer: Any, agent: Any) -> None:
    ids = log_pending(agent.agent_id, 60)
    client = signed_in(reviewer)
    seen: list[str] = []
    url = "/queue/"
    while url:
        response = client.get(url)
        html = response.content.decode()
        seen += [i for i in ids if f'data-entry-id="{i}"' in html]
        url = response.context["next_url"]
    assert seen == ids


def test_queue__queries__as_many_for_many_items_of_every_kind_as_for_one(reviewer: Any, agent: Any) -> None:
    """The list reads only the columns an item shows (``ITEM_COLUMNS``): an item that needed another one would
    load it with a query of its own."""
    (first,) = log_pending(agent.agent_id, 1, ago=timedelta(hours=3))
    client = signed_in(reviewer)

    def queries(url: str = "/queue/") -> int:
        client.get(url)  # warm: the kept counts and the reviewer's last answer
        with CaptureQueriesContext(connection) as captured:
            assert client.get(url).status_code == 200
        return len(captured.captured_queries)

    one = queries()
    make_agent("thumbs", binary_mode=True, review_sample_rate=1.0)
    log_pending("thumbs", 3, decision={"action": "auto-resolve"})
    log_pending(agent.agent_id, 3, decision={"reasoning": ""}, context={"features": {f"f{i}": i for i in range(10)}})
    claimed = log_pending(agent.agent_id, 1)[0]
    assert claim_acquire(entry_id=claimed, reviewer="rita", now=timezone.now()).won
    assert queries() == one
    client.post("/queue/respond/", {"entry_id": first, "response": "dismiss"}, headers=HX)
    with_undo = queries()
    assert with_undo == one + 1  # the answer the undo link names, read back by its key
    assert queries(f"/queue/?amend={first}") == with_undo + 1  # and the whole decision to show it again


def test_respond__approve__stored_with_responder_and_time(reviewer: Any, pending: list[str]) -> None:
    response = signed_in(reviewer).post(
        "/queue/respond/", headers=HX, data={"entry_id": pending[0], "response": "approve"}
    )
    assert response.status_code == 200
    d = stored(pending[0])
    assert (d.response_action, d.responder_id, d.response_source) == ("approve", "rita", "web")
    assert d.time_to_respond is not None and d.time_to_respond > 3600
    html = response.content.decode()
    assert f'data-entry-id="{pending[0]}"' not in html
    assert f'data-entry-id="{pending[1]}"' in html


def test_respond__modify_with_note__stored(reviewer: Any, pending: list[str]) -> None:
    signed_in(reviewer).post(
        "/queue/respond/", headers=HX, data={"entry_id": pending[0], "modify_to": "escalate", "note": " big one "}
    )
    d = stored(pending[0])
    assert (d.response_action, d.modified_action, d.response_note) == ("modify", "escalate", "big one")


def test_respond__modify_to_unknown_action__refused_with_message(reviewer: Any, pending: list[str]) -> None:
    response = signed_in(reviewer).post(
        "/queue/respond/", headers=HX, data={"entry_id": pending[0], "modify_to": "explode"}
    )
    assert "modifiedAction must be one of" in response.content.decode()
    assert stored(pending[0]).response_action is None


def test_respond__bulk__every_selected_item_answered(reviewer: Any, pending: list[str]) -> None:
    signed_in(reviewer).post("/queue/respond/", headers=HX, data={"entry_id": pending[:2], "response": "dismiss"})
    assert [stored(i).response_action for i in pending] == ["dismiss", "dismiss", None]


def test_respond__second_response__refused_first_stands(reviewer: Any, approver: Any, pending: list[str]) -> None:
    signed_in(approver).post("/queue/respond/", headers=HX, data={"entry_id": pending[0], "response": "approve"})
    response = signed_in(reviewer).post(
        "/queue/respond/", headers=HX, data={"entry_id": pending[0], "response": "dismiss"}
    )
    assert "alice already answered" in response.content.decode()
    d = stored(pending[0])
    assert (d.response_action, d.responder_id) == ("approve", "alice")


def test_respond__item_claimed_by_other__refused(reviewer: Any, approver: Any, pending: list[str]) -> None:
    assert claim_acquire(entry_id=pending[0], reviewer="alice", now=timezone.now()).won
    response = signed_in(reviewer).post(
        "/queue/respond/", headers=HX, data={"entry_id": pending[0], "response": "dismiss"}
    )
    assert "alice is reviewing" in response.content.decode()
    assert stored(pending[0]).response_action is None


def test_queue__item_claimed_by_other__not_listed_until_claim_runs_out(
    reviewer: Any, approver: Any, pending: list[str]
) -> None:
    now = timezone.now()
    assert claim_acquire(entry_id=pending[0], reviewer="alice", now=now).won
    client = signed_in(reviewer)
    assert f'data-entry-id="{pending[0]}"' not in client.get("/queue/").content.decode()
    Decision.objects.filter(entry_id=pending[0]).update(claimed_until=now - timedelta(seconds=1))
    assert f'data-entry-id="{pending[0]}"' in client.get("/queue/").content.decode()


def test_claim__two_reviewers__only_first_wins(reviewer: Any, approver: Any, pending: list[str]) -> None:
    first = signed_in(approver).post("/queue/claim/", {"entry_id": pending[0]}).json()
    second = signed_in(reviewer).post("/queue/claim/", {"entry_id": pending[0]}).json()
    assert first["won"] is True
    assert second == {**second, "won": False, "holder": "alice"}
    assert stored(pending[0]).claimed_by == "alice"


def test_claim__moving_on__releases_the_previous_item(reviewer: Any, pending: list[str]) -> None:
    client = signed_in(reviewer)
    client.post("/queue/claim/", {"entry_id": pending[0]})
    client.post("/queue/claim/", {"entry_id": pending[1], "release": pending[0]})
    assert stored(pending[0]).claimed_by is None
    assert stored(pending[1]).claimed_by == "rita"


def test_header__pending_done_today_and_week_rate(reviewer: Any, pending: list[str]) -> None:
    client = signed_in(reviewer)
    client.post("/queue/respond/", headers=HX, data={"entry_id": pending[0], "response": "approve"})
    response = client.get("/queue/stats/")
    stats = response.context["stats"]
    assert (stats.pending, stats.done_today) == (2, 1)
    html = response.content.decode()
    assert 'data-stat="pending">2<' in html and 'data-stat="today">1<' in html


def test_header__week_rate_below_60_percent__warning_shown(reviewer: Any, agent: Any) -> None:
    # decisions of this ISO week: keep them inside it whatever the weekday
    now = timezone.now()
    ids = log_pending(agent.agent_id, 5, now=now, minutes_apart=0, ago=timedelta(seconds=5))
    client = signed_in(reviewer)
    client.post("/queue/respond/", headers=HX, data={"entry_id": ids[0], "response": "approve"})
    html = client.get("/queue/stats/").content.decode()
    assert 'data-stat="week-rate">20 %<' in html
    assert "below 60 %" in html
    html = client.post(
        "/queue/respond/", headers=HX, data={"entry_id": ids[1:4], "response": "approve"}
    ).content.decode()
    assert 'data-stat="week-rate">80 %<' in html
    assert "below 60 %" not in html


def test_nav__links_for_existing_routes_the_user_may_open(reviewer: Any, approver: Any, admin_user: Any) -> None:
    def nav(user: Any) -> list[str]:
        html = signed_in(user).get("/queue/").content.decode()
        block = html[html.index('<nav aria-label="Main">') : html.index("</nav>")]
        return [label for label in ("Queue", "Proposals", "Audit trail", "Admin", "API docs") if f">{label}<" in block]

    assert nav(reviewer) == ["Queue", "API docs"]
    assert nav(approver) == ["Queue", "Proposals", "Audit trail", "Admin", "API docs"]  # approvers sign off there too
    assert nav(admin_user) == ["Queue", "Proposals", "Audit trail", "Admin", "API docs"]


def test_sign_in__good_password__lands_on_queue(reviewer: Any) -> None:
    client = Client()
    response = client.post("/accounts/login/", {"username": "rita", "password": "correct-horse-battery"})
    assert response.status_code == 302
    assert client.get(response["Location"], follow=True).request["PATH_INFO"] == "/queue/"


def test_sign_in__wrong_password__message(reviewer: Any) -> None:
    response = Client().post("/accounts/login/", {"username": "rita", "password": "nope"})
    assert "did not match" in response.content.decode()


def test_claim__leaving_the_page__release_alone_gives_the_item_back(reviewer: Any, pending: list[str]) -> None:
    client = signed_in(reviewer)
    client.post("/queue/claim/", {"entry_id": pending[0]})
    response = client.post("/queue/claim/", {"release": pending[0]})
    assert response.json()["released"] is True
    assert stored(pending[0]).claimed_by is None


def test_respond__without_javascript__redirects_back_with_a_message(reviewer: Any, pending: list[str]) -> None:
    client = signed_in(reviewer)
    response = client.post("/queue/respond/", {"entry_id": pending[0], "response": "escalate", "agent": "triage"})
    assert response.status_code == 302 and response["Location"] == "/queue/?agent=triage"
    page = client.get(response["Location"]).content.decode()
    assert f"{pending[0]}: escalate" in page
    assert stored(pending[0]).response_action == "escalate"


def test_queue_page__header_figures_load_in_their_own_request(reviewer: Any, pending: list[str]) -> None:
    html = signed_in(reviewer).get("/queue/").content.decode()
    assert 'hx-get="/queue/stats/"' in html and 'hx-trigger="load"' in html
    assert signed_in(reviewer).get("/queue/stats/").status_code == 200


# --- binary mode and changing an answer (issue 10) ----------------------------------------------------------


def test_respond__thumb_down__dismiss_on_an_alert_escalate_on_a_sampled_miss(reviewer: Any) -> None:
    make_agent("thumbs", binary_mode=True, review_sample_rate=1.0)
    (fired,) = log_pending("thumbs", 1)
    (sampled,) = log_pending("thumbs", 1, decision={"action": "auto-resolve"})

    html = ""
    for entry_id in (fired, sampled):
        html += (
            signed_in(reviewer)
            .post("/queue/respond/", {"entry_id": entry_id, "thumb": "down"}, headers=HX)
            .content.decode()
        )

    assert (stored(fired).response_action, stored(sampled).response_action) == ("dismiss", "escalate")
    assert "thumbs down: should not have fired → dismiss" in html
    assert "thumbs down: should have acted → escalate" in html
    bad = signed_in(reviewer).post("/queue/respond/", {"entry_id": fired, "thumb": "sideways"}, headers=HX)
    assert "Unknown thumb" in bad.content.decode()


def test_undo__last_answer_offered_shown_again_and_amended(reviewer: Any, pending: list[str]) -> None:
    client = signed_in(reviewer)
    client.post("/queue/respond/", {"entry_id": pending[0], "response": "dismiss"}, headers=HX)
    page = client.get("/queue/").content.decode()
    assert f'data-undo="triage:{pending[0]}"' in page and "Change your last answer" in page

    shown = client.get(f"/queue/?amend={pending[0]}", headers=HX).content.decode()
    assert (
        f'data-entry-id="{pending[0]}" data-agent-id="triage" data-key="triage:{pending[0]}" data-amending="1"' in shown
    )
    assert 'name="amends" value="1"' in shown and "You answered <strong>dismiss" in shown

    done = client.post("/queue/respond/", {"entry_id": pending[0], "response": "approve", "amends": "1"}, headers=HX)
    assert f"{pending[0]}: changed to approve" in done.content.decode()
    assert stored(pending[0]).response_action == "approve"


def test_undo__another_reviewers_answer_is_not_offered(reviewer: Any, pending: list[str]) -> None:
    signed_in(reviewer).post("/queue/respond/", {"entry_id": pending[0], "response": "dismiss"}, headers=HX)
    other = signed_in(user_with_role("reviewer", username="ron"))

    shown = other.get(f"/queue/?amend={pending[0]}").content.decode()
    assert "data-amending" not in shown and "data-undo" not in shown
    refused = other.post("/queue/respond/", {"entry_id": pending[0], "response": "approve", "amends": "1"}, headers=HX)
    assert "was not changed: rita answered" in refused.content.decode()
    assert stored(pending[0]).response_action == "dismiss"


def test_decision_page__shows_every_answer_and_amends_through_the_service(
    reviewer: Any, approver: Any, pending: list[str]
) -> None:
    signed_in(reviewer).post("/queue/respond/", headers=HX, data={"entry_id": pending[0], "response": "dismiss"})

    changed = signed_in(approver).post(
        f"/decisions/{pending[0]}/",
        {"action": "modify", "modified_action": "escalate", "note": "real one"},
        follow=True,
    )

    html = changed.content.decode()
    assert "the answer is now modify" in html
    rows = html.split('data-testid="response-history"')[1]
    assert rows.index("dismiss") < rows.index("modify → escalate") and "real one" in rows and "alice" in rows
    assert stored(pending[0]).response_action == "modify"
    refused = signed_in(user_with_role("reviewer", username="ron")).post(
        f"/decisions/{pending[0]}/", {"action": "approve"}
    )
    assert refused.status_code == 400 and "only they" in refused.content.decode()
    assert signed_in(reviewer).get("/decisions/nope/").status_code == 404
