"""``response_record_bulk`` (simulations, replays, imports): each first answer is checked as ``response_record``
checks it, and one that fails a check is skipped without failing the rest."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from auditlog.models import Decision
from auditlog.services import BulkResponse, decision_log, response_record_bulk
from tests.factories import entry

pytestmark = pytest.mark.django_db

LOGGED = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def logged(agent: Any, entry_id: str) -> Decision:
    status, decision = decision_log(raw=entry(agent.agent_id, id=entry_id), now=LOGGED)
    assert status == "created"
    return decision


def item(entry_id: str, action: str = "dismiss", *, after: timedelta = timedelta(hours=2), **extra: Any) -> Any:
    raw: dict[str, object] = {"action": action, "respondedAt": (LOGGED + after).isoformat(), **extra}
    return BulkResponse(entry_id=entry_id, raw=raw, responder_id="rev-1")


def test_bulk__first_answers__written_with_their_time_to_respond_and_source(agent: Any) -> None:
    logged(agent, "a")
    logged(agent, "b")
    Decision.objects.filter(entry_id="b").update(claimed_by="rev-2", claimed_until=LOGGED + timedelta(hours=9))

    written = response_record_bulk(
        items=[item("a"), item("b", "modify", after=timedelta(minutes=30), modifiedAction="escalate")],
        now=LOGGED + timedelta(hours=3),
    )

    rows = {d.entry_id: d for d in Decision.objects.filter(entry_id__in=["a", "b"])}
    assert written == 2
    assert (rows["a"].response_action, rows["a"].responder_id, rows["a"].time_to_respond) == ("dismiss", "rev-1", 7200)
    assert rows["a"].response_source == "import" and rows["a"].responded_at == LOGGED + timedelta(hours=2)
    assert (rows["b"].response_action, rows["b"].modified_action, rows["b"].time_to_respond) == (
        "modify",
        "escalate",
        1800,
    )
    assert rows["b"].claimed_by is None and rows["b"].claimed_until is None


def test_bulk__answers_that_fail_a_check__skipped_and_the_rest_written(agent: Any) -> None:
    for entry_id in ("answered", "bad-modify", "too-early", "bad-action", "twice", "good"):
        logged(agent, entry_id)
    response_record_bulk(items=[item("answered", "approve")], now=LOGGED + timedelta(hours=3))

    written = response_record_bulk(
        items=[
            item("answered", "dismiss"),  # already answered: the first answer stands
            item("bad-modify", "modify", modifiedAction="not-an-action"),
            item("too-early", after=timedelta(hours=-1)),  # before the decision
            item("bad-action", "shrug"),
            item("twice", "approve"),
            item("twice", "dismiss"),  # the same decision twice in one call: the first only
            item("unknown-id"),
            item("good", "escalate"),
        ],
        now=LOGGED + timedelta(hours=3),
    )

    answers = dict(Decision.objects.order_by().values_list("entry_id", "response_action"))
    assert written == 2
    assert answers == {
        "answered": "approve",
        "bad-modify": None,
        "too-early": None,
        "bad-action": None,
        "twice": "approve",
        "good": "escalate",
    }


def test_bulk__answer_recorded_meanwhile__stands(agent: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import auditlog.services as services

    logged(agent, "raced")
    real = services.response_parse

    def reviewer_answers_first(*args: Any, **kwargs: Any) -> Any:
        # A reviewer answers between this call's read and its write: the write is conditional, so theirs stands.
        Decision.objects.filter(entry_id="raced").update(response_action="approve", responder_id="rev-9")
        return real(*args, **kwargs)

    monkeypatch.setattr(services, "response_parse", reviewer_answers_first)

    written = response_record_bulk(items=[item("raced", "dismiss")], now=LOGGED + timedelta(hours=3))

    row = Decision.objects.get(entry_id="raced")
    assert written == 0 and (row.response_action, row.responder_id) == ("approve", "rev-9")
