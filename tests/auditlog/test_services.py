import pytest

from auditlog.exceptions import AlreadyResponded, EntryConflict
from auditlog.models import Decision
from auditlog.services import decision_log, decision_log_batch, response_record
from tests.factories import NOW, entry


@pytest.mark.django_db
def test_decision_log__new_entry__stored_with_live_version_and_queued(agent):
    status, decision = decision_log(raw=entry(id="d-1"), now=NOW)
    assert status == "created"
    stored = Decision.objects.get(entry_id="d-1")
    assert stored.config_version.number == 1
    assert stored.queued is True and stored.review_reason == "fired"
    assert stored.threshold_name == "flag_threshold"


@pytest.mark.django_db
def test_decision_log__same_id_same_content__duplicate_other_content__conflict(agent):
    decision_log(raw=entry(id="d-1"), now=NOW)
    assert decision_log(raw=entry(id="d-1"), now=NOW)[0] == "duplicate"
    with pytest.raises(EntryConflict):
        decision_log(raw=entry(id="d-1", sessionId="other"), now=NOW)
    assert Decision.objects.count() == 1


@pytest.mark.django_db
def test_response_record__second_response__refused_first_stands(agent):
    decision_log(raw=entry(id="d-1"), now=NOW)
    first = response_record(entry_id="d-1", raw={"action": "dismiss"}, responder_id="rita", now=NOW)
    assert first.time_to_respond == 3600.0
    with pytest.raises(AlreadyResponded):
        response_record(entry_id="d-1", raw={"action": "approve"}, responder_id="bob", now=NOW)
    assert Decision.objects.get(entry_id="d-1").response_action == "dismiss"


@pytest.mark.django_db
def test_decision_log_batch__mixed__valid_stored_invalid_reported(agent):
    decision_log(raw=entry(id="old"), now=NOW)
    results = decision_log_batch(
        entries=[entry(id="a"), entry(id="b", decision={"confidence": 2}), entry(id="old"), entry(id="a")], now=NOW
    )
    assert [r.status for r in results] == ["created", "invalid", "duplicate", "duplicate"]
    assert results[1].errors == {"decision.confidence": "decision.confidence must be between 0 and 1"}
    assert set(Decision.objects.values_list("entry_id", flat=True)) == {"old", "a"}
