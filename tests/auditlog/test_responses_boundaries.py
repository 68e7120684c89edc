"""The response and amendment rules (contract, "Human response" and ``POST /decisions/{id}/response``) pinned at
their edges: a response at the decision's own timestamp and one a microsecond before, the author's amendment window
to the microsecond, a modify to an action the agent does not have."""

import logging
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser

from auditlog.exceptions import AlreadyResponded, InvalidEntry
from auditlog.models import Decision, ResponseRevision
from auditlog.services import decision_log, response_amend, response_record
from loopsite.exceptions import Forbidden
from loopsite.rules import rule
from tests.factories import NOW, entry

DECIDED = NOW - timedelta(hours=1)  # the decision's timestamp in ``entry``
CHANGED_MEANWHILE = ("id", "the response to 'd-1' changed meanwhile; read it again")


@pytest.fixture
def logged(agent: Any) -> str:
    decision_log(raw=entry(id="d-1"), now=NOW)
    return "d-1"


def record(raw: dict[str, Any], *, now: Any = NOW, by: str = "rita") -> Decision:
    return response_record(entry_id="d-1", agent_id="triage", raw=raw, responder_id=by, now=now)


def refusal(raw: dict[str, Any]) -> InvalidEntry:
    with pytest.raises(InvalidEntry) as caught:
        record(raw)
    assert Decision.objects.get(entry_id="d-1").response_action is None
    return caught.value


@pytest.mark.django_db
def test_response_record__at_the_decisions_timestamp__accepted_with_no_wait(logged: str) -> None:
    decision = record({"action": "approve", "respondedAt": DECIDED.isoformat()})
    assert (decision.responded_at, decision.time_to_respond) == (DECIDED, 0.0)


@pytest.mark.django_db
def test_response_record__a_microsecond_before_the_decision__refused(logged: str) -> None:
    error = refusal({"action": "approve", "respondedAt": (DECIDED - timedelta(microseconds=1)).isoformat()})
    assert (error.field, error.message) == ("respondedAt", "respondedAt is before the decision's timestamp")


@pytest.mark.django_db
def test_response_record__every_field_stored_the_server_sets_responder_and_wait(
    logged: str, caplog: pytest.LogCaptureFixture
) -> None:
    raw = {
        "action": "modify",
        "modifiedAction": "escalate",
        "note": "n",
        "respondedAt": "2026-03-02T10:30:00+02:00",
        "responderId": "someone-else",
        "timeToRespond": 5,
    }
    with caplog.at_level(logging.INFO, logger="auditlog.services"):
        record(raw)
    stored = Decision.objects.get(entry_id="d-1")
    assert (
        stored.response_action,
        stored.modified_action,
        stored.response_note,
        stored.responder_id,
        stored.responded_at,
        stored.time_to_respond,
        stored.response_source,
        stored.claimed_by,
        stored.claimed_until,
    ) == ("modify", "escalate", "n", "rita", DECIDED + timedelta(minutes=30), 1800.0, "api", None, None)
    assert stored.responded_at is not None and stored.responded_at.utcoffset() == timedelta(0)
    (event,) = [r for r in caplog.records if r.getMessage() == "decision.responded"]
    assert (event.entry_id, event.action, event.by) == ("d-1", "modify", "rita")  # type: ignore[attr-defined]


@pytest.mark.django_db
def test_response_record__modified_action_without_a_modify__not_kept(logged: str) -> None:
    record({"action": "escalate", "modifiedAction": "flag"})
    assert Decision.objects.get(entry_id="d-1").modified_action is None


@pytest.mark.django_db
@pytest.mark.parametrize("modified", ["auto-resolve", "flag", "escalate"])
def test_response_record__modify_to_each_of_the_agents_actions__accepted(logged: str, modified: str) -> None:
    assert record({"action": "modify", "modifiedAction": modified}).modified_action == modified


@pytest.mark.django_db
def test_response_record__modify_to_an_action_the_agent_lacks__refused(logged: str) -> None:
    error = refusal({"action": "modify", "modifiedAction": "block"})
    assert (error.field, error.message) == (
        "modifiedAction",
        "modifiedAction must be one of auto-resolve, flag, escalate",
    )


@pytest.mark.django_db
def test_response_record__second__refused_saying_the_first_stands(logged: str) -> None:
    record({"action": "dismiss"})
    with pytest.raises(AlreadyResponded) as caught:
        record({"action": "approve"}, by="bob")
    assert caught.value.message == "decision 'd-1' has a response already; the first one stands"
    assert Decision.objects.get(entry_id="d-1").responder_id == "rita"


# --- Amendments ----------------------------------------------------------------------------------------------


def amend(actor: Any, *, now: Any, action: str = "approve") -> Decision:
    decision = Decision.objects.get(entry_id="d-1", agent__agent_id="triage")
    return response_amend(decision=decision, raw={"action": action}, actor=actor, now=now)


@pytest.mark.django_db
def test_response_amend__by_the_author_exactly_at_the_windows_end__accepted(logged: str, reviewer: Any) -> None:
    assert rule("AMEND_WINDOW_HOURS") == 24
    record({"action": "dismiss"})
    amended = amend(reviewer, now=NOW + timedelta(hours=24))
    assert (amended.response_action, amended.responder_id, amended.responded_at) == (
        "approve",
        "rita",
        NOW + timedelta(hours=24),
    )
    history = ResponseRevision.objects.filter(entry_id="d-1").order_by("number")
    assert [(r.number, r.action, r.responder_id, r.recorded_at) for r in history] == [
        (1, "dismiss", "rita", NOW + timedelta(hours=24)),
        (2, "approve", "rita", NOW + timedelta(hours=24)),
    ]


@pytest.mark.django_db
def test_response_amend__by_the_author_a_microsecond_late__refused(logged: str, reviewer: Any) -> None:
    record({"action": "dismiss"})
    with pytest.raises(Forbidden) as caught:
        amend(reviewer, now=NOW + timedelta(hours=24, microseconds=1))
    assert (caught.value.field, caught.value.message) == (
        "amends",
        "your answer to d-1 is older than 24 h; ask an approver to amend it",
    )
    assert not ResponseRevision.objects.exists()


@pytest.mark.django_db
def test_response_amend__by_an_approver_a_year_later__accepted_third_revision_numbered(
    logged: str, reviewer: Any, approver: Any
) -> None:
    record({"action": "dismiss"})
    amend(reviewer, now=NOW + timedelta(hours=1), action="escalate")
    amended = amend(approver, now=NOW + timedelta(days=365))
    assert (amended.response_action, amended.responder_id) == ("approve", "alice")
    numbers = ResponseRevision.objects.filter(entry_id="d-1").order_by("number")
    assert [(r.number, r.action) for r in numbers] == [(1, "dismiss"), (2, "escalate"), (3, "approve")]


@pytest.mark.django_db
def test_response_amend__another_reviewer__refused_naming_the_author(logged: str) -> None:
    from tests.factories import user_with_role

    record({"action": "dismiss"})
    with pytest.raises(Forbidden) as caught:
        amend(user_with_role("reviewer", username="ron"), now=NOW)
    assert caught.value.message == "rita answered d-1; only they (within 24 h) or an approver may amend it"


@pytest.mark.django_db
def test_response_amend__nothing_to_amend__refused(logged: str, reviewer: Any) -> None:
    with pytest.raises(InvalidEntry) as caught:
        amend(reviewer, now=NOW)
    assert (caught.value.field, caught.value.message) == (
        "amends",
        "decision 'd-1' has no response to amend; send it without amends",
    )


# --- Who and what each write touches ------------------------------------------------------------------------


@pytest.fixture
def two_agents(agent: Any) -> Any:
    """triage and other each log their own d-1, at the same instant."""
    from tests.factories import make_agent

    other, _ = make_agent("other")
    decision_log(raw=entry(id="d-1"), now=NOW)
    decision_log(raw=entry("other", id="d-1"), now=NOW)
    decision_log(raw=entry(id="d-2"), now=NOW)
    return other


@pytest.mark.django_db
def test_response_record__same_id_two_agents__only_the_named_agents_and_only_that_decision(two_agents: Any) -> None:
    record({"action": "dismiss"})
    answered = {(d.agent.agent_id, d.entry_id): d.response_action for d in Decision.objects.select_related("agent")}
    assert answered == {("triage", "d-1"): "dismiss", ("other", "d-1"): None, ("triage", "d-2"): None}


@pytest.mark.django_db
def test_response_record__the_returned_decision__as_stored(logged: str) -> None:
    from datetime import UTC

    decision = record({"action": "approve", "respondedAt": "2026-03-02T10:30:00+02:00"})
    assert decision.responded_at is not None and decision.responded_at.tzinfo is UTC
    assert decision.response_source == "api"
    assert decision.responded_at == DECIDED + timedelta(minutes=30)


@pytest.mark.django_db
def test_response_record__a_claimed_decision__claim_released(logged: str) -> None:
    Decision.objects.filter(entry_id="d-1").update(claimed_by="rita", claimed_until=NOW + timedelta(minutes=5))
    record({"action": "approve"})
    stored = Decision.objects.get(entry_id="d-1")
    assert (stored.claimed_by, stored.claimed_until) == (None, None)


@pytest.mark.django_db
def test_response_record__default_prefix__fields_named_under_response(logged: str) -> None:
    with pytest.raises(InvalidEntry) as caught:
        response_record(entry_id="d-1", agent_id="triage", raw={"action": "maybe"}, responder_id="rita", now=NOW)
    assert caught.value.field == "response.action"
    with pytest.raises(InvalidEntry) as caught:
        response_record(
            entry_id="d-1",
            agent_id="triage",
            raw={"action": "maybe"},
            responder_id="rita",
            now=NOW,
            amends=True,
            field_prefix="r",
        )
    assert caught.value.field == "amends"  # nothing to amend yet: refused before the body is read


@pytest.mark.django_db
def test_response_record__second__refusal_names_the_id(logged: str) -> None:
    record({"action": "dismiss"})
    with pytest.raises(AlreadyResponded) as caught:
        record({"action": "approve"})
    assert caught.value.field == "id"


def test_response_values__a_given_wait__kept() -> None:
    from auditlog.entry import ResponseInput
    from auditlog.services import _response_values

    given = ResponseInput(action="approve", responded_at=NOW, responder_id="rita", time_to_respond=5.0)
    assert _response_values(given, timestamp=DECIDED, source="import")["time_to_respond"] == 5.0
    computed = ResponseInput(action="approve", responded_at=NOW, responder_id="rita")
    values = _response_values(computed, timestamp=DECIDED, source="import")
    assert (values["time_to_respond"], values["response_source"]) == (3600.0, "import")


@pytest.mark.django_db
def test_response_record__amends__through_response_amend_with_its_source_and_prefix(logged: str, reviewer: Any) -> None:
    record({"action": "dismiss"})
    amended = response_record(
        entry_id="d-1",
        agent_id="triage",
        raw={"action": "modify", "modifiedAction": "flag"},
        responder_id="ignored",
        now=NOW,
        amends=True,
        actor=reviewer,
        source="page",
    )
    stored = Decision.objects.get(entry_id="d-1")
    assert (amended.response_source, stored.response_source) == ("page", "page")
    assert (stored.response_action, stored.modified_action, stored.responder_id) == ("modify", "flag", "rita")
    with pytest.raises(InvalidEntry) as caught:
        response_record(
            entry_id="d-1",
            agent_id="triage",
            raw={"action": "maybe"},
            responder_id="rita",
            now=NOW,
            amends=True,
            actor=reviewer,
            field_prefix="r",
        )
    assert caught.value.field == "r.action"


@pytest.mark.django_db
def test_response_amend__defaults__api_and_unprefixed_fields(logged: str, reviewer: Any) -> None:
    record({"action": "dismiss"})
    assert amend(reviewer, now=NOW).response_source == "api"
    assert Decision.objects.get(entry_id="d-1").response_source == "api"
    decision = Decision.objects.get(entry_id="d-1")
    with pytest.raises(InvalidEntry) as caught:
        response_amend(decision=decision, raw={"action": "maybe"}, actor=reviewer, now=NOW)
    assert caught.value.field == "action"


@pytest.mark.django_db
def test_response_amend__someone_with_no_username__refused(logged: str) -> None:
    record({"action": "dismiss"})
    with pytest.raises(Forbidden) as caught:
        amend(object(), now=NOW)
    assert caught.value.field == "amends"


@pytest.mark.django_db
def test_response_amend__same_id_two_agents__each_its_own_history(two_agents: Any, reviewer: Any) -> None:
    response_record(entry_id="d-1", agent_id="other", raw={"action": "dismiss"}, responder_id="rita", now=NOW)
    other = Decision.objects.get(entry_id="d-1", agent=two_agents)
    response_amend(decision=other, raw={"action": "approve"}, actor=reviewer, now=NOW)
    record({"action": "dismiss"})
    amend(reviewer, now=NOW, action="escalate")
    amend(reviewer, now=NOW, action="approve")
    mine = ResponseRevision.objects.filter(entry_id="d-1", agent__agent_id="triage").order_by("number")
    assert [(r.number, r.action) for r in mine] == [(1, "dismiss"), (2, "escalate"), (3, "approve")]


@pytest.mark.django_db
def test_response_amend__the_label_changed_since_it_was_read__refused(
    logged: str, reviewer: Any, approver: Any
) -> None:
    record({"action": "dismiss"})
    stale = Decision.objects.get(entry_id="d-1")
    amend(approver, now=NOW + timedelta(minutes=1))
    with pytest.raises(AlreadyResponded) as caught:
        response_amend(decision=stale, raw={"action": "escalate"}, actor=reviewer, now=NOW + timedelta(minutes=2))
    assert (caught.value.field, caught.value.message) == CHANGED_MEANWHILE


@pytest.mark.django_db
def test_response_amend__a_revision_written_meanwhile__refused(
    logged: str, reviewer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import auditlog.services as services

    record({"action": "dismiss"})
    real = services._revision

    def raced(decision: Decision, *, number: int, recorded_at: Any) -> ResponseRevision:
        revision = real(decision, number=number, recorded_at=recorded_at)
        if number == 2:  # another amendment stored its revision first
            real(decision, number=number, recorded_at=recorded_at).save()
        return revision

    monkeypatch.setattr(services, "_revision", raced)
    with pytest.raises(AlreadyResponded) as caught:
        amend(reviewer, now=NOW)
    assert (caught.value.field, caught.value.message) == CHANGED_MEANWHILE


@pytest.mark.django_db
def test_response_amend__logged_with_what_it_replaced(
    logged: str, reviewer: Any, caplog: pytest.LogCaptureFixture
) -> None:
    record({"action": "dismiss"})
    with caplog.at_level(logging.INFO, logger="auditlog.services"):
        amend(reviewer, now=NOW, action="escalate")
    (event,) = [r for r in caplog.records if r.getMessage() == "decision.response_amended"]
    assert (event.entry_id, event.action, event.by, event.was) == ("d-1", "escalate", "rita", "dismiss")  # type: ignore[attr-defined]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("who", "action", "minutes"),
    [("reviewer", "approve", 0), ("reviewer", "dismiss", 1), ("approver", "dismiss", 0)],
    ids=["only-the-action-changed", "only-the-time-changed", "only-the-responder-changed"],
)
def test_response_amend__any_part_of_the_label_changed_since_read__refused(
    logged: str, reviewer: Any, approver: Any, who: str, action: str, minutes: int
) -> None:
    record({"action": "dismiss"})
    stale = Decision.objects.get(entry_id="d-1")
    amend({"reviewer": reviewer, "approver": approver}[who], now=NOW + timedelta(minutes=minutes), action=action)
    with pytest.raises(AlreadyResponded):
        response_amend(decision=stale, raw={"action": "escalate"}, actor=approver, now=NOW + timedelta(minutes=5))


@pytest.mark.django_db
def test_response_amend__stored_as_the_new_label(logged: str, approver: Any) -> None:
    record({"action": "dismiss"})
    amend(approver, now=NOW + timedelta(days=2), action="escalate")
    stored = Decision.objects.get(entry_id="d-1")
    assert (stored.response_action, stored.responder_id, stored.responded_at, stored.time_to_respond) == (
        "escalate",
        "alice",
        NOW + timedelta(days=2),
        (NOW + timedelta(days=2) - DECIDED).total_seconds(),
    )


@pytest.mark.django_db
def test_response_amend__two_decisions_answered_alike__only_the_one_amended(two_agents: Any, approver: Any) -> None:
    record({"action": "dismiss"})
    response_record(entry_id="d-2", agent_id="triage", raw={"action": "dismiss"}, responder_id="rita", now=NOW)
    decision = Decision.objects.get(entry_id="d-2")
    response_amend(decision=decision, raw={"action": "approve"}, actor=approver, now=NOW)
    response_amend(decision=Decision.objects.get(entry_id="d-2"), raw={"action": "escalate"}, actor=approver, now=NOW)
    amend(approver, now=NOW, action="escalate")
    assert Decision.objects.get(entry_id="d-2").response_action == "escalate"
    numbers = ResponseRevision.objects.filter(entry_id="d-1", agent__agent_id="triage").order_by("number")
    assert [(r.number, r.action) for r in numbers] == [(1, "dismiss"), (2, "escalate")]


@pytest.mark.django_db
@pytest.mark.parametrize("actor", [object(), AnonymousUser()])
def test_response_amend__nobody_signed_in__never_the_author(logged: str, actor: Any) -> None:
    record({"action": "dismiss"}, by="XXXX")
    with pytest.raises(Forbidden):
        amend(actor, now=NOW)


@pytest.mark.django_db
def test_response_amend__another_decision_with_the_same_label__untouched(two_agents: Any, approver: Any) -> None:
    record({"action": "dismiss"})
    response_record(entry_id="d-2", agent_id="triage", raw={"action": "dismiss"}, responder_id="rita", now=NOW)
    amend(approver, now=NOW, action="escalate")
    assert Decision.objects.get(entry_id="d-2").response_action == "dismiss"
