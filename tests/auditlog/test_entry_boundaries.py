"""The input parser (contract, "Bad input gets a 4xx") pinned at every limit: the longest value accepted and one
character more refused, the edges of every range, NaN, infinity and a bool wherever a number goes. Pure."""

import math
from datetime import datetime, timedelta
from typing import Any

import pytest

from auditlog.entry import (
    MAX_TIME_TO_RESPOND,
    EntryInput,
    ResponseInput,
    content_hash_v1,
    entry_parse,
    finite_number,
    parse_time,
    response_parse,
    sample_draw,
)
from auditlog.exceptions import InvalidEntry
from loopsite.exceptions import ValidationFailed
from loopsite.input_checks import MAX_DEPTH, json_load, text_problem, tree_check
from tests.factories import NOW, entry

NOT_FINITE = [math.nan, math.inf, -math.inf, True, False, "0.5", None]


def refused(raw: Any, field: str, message: str | None = None) -> None:
    with pytest.raises(InvalidEntry) as caught:
        entry_parse(raw, now=NOW)
    assert caught.value.field == field
    if message is not None:
        assert caught.value.message == message


def test_entry_parse__a_full_entry__every_value_as_sent() -> None:
    raw = entry(
        id="e-1",
        configVersion=3,
        decision={"thresholdName": "flag_threshold"},
        humanResponse={
            "action": "modify",
            "modifiedAction": "escalate",
            "respondedAt": "2026-03-02T08:30:00+00:00",
            "responderId": "rita",
            "note": "n",
            "timeToRespond": 1800,
        },
    )
    parsed = entry_parse(raw, now=NOW)
    at = datetime.fromisoformat("2026-03-02T08:00:00+00:00")
    assert parsed == EntryInput(
        id="e-1",
        id_given=True,
        timestamp=at,
        agent_id="triage",
        session_id="session-1",
        action="flag",
        confidence=0.72,
        threshold_used=0.6,
        reasoning="amount far above the customer's average",
        threshold_name="flag_threshold",
        input_hash="sha256:abc",
        features={"amount_z": 3.2, "night": 1.0},
        matched_rules=["high_amount"],
        human_response=ResponseInput(
            action="modify",
            responded_at=at + timedelta(minutes=30),
            responder_id="rita",
            modified_action="escalate",
            note="n",
            time_to_respond=1800.0,
        ),
        config_version=3,
    )
    # The content hash is part of the idempotency contract: a resend of a stored entry must hash the same, under
    # the version it was stored with (version 1, before orjson, is still computed to compare with).
    assert parsed.content_hash == "v2:a8dcb38debbda6380d0583931651306f4238f2fbe20f91ee4a4fddad8000"
    assert content_hash_v1(parsed) == "c94f86469408ffbc094fdab58a9fa6f5e6946518d672ad2f71a5f2612f078c3c"
    bare = entry_parse(entry(id="e-1"), now=NOW)
    assert content_hash_v1(bare) == "befcac9764ac8e1592a6655d2861cf9824e5698894531babcd2468677df65002"
    assert (bare.human_response, bare.config_version, bare.threshold_name) == (None, None, None)


def test_entry_parse__no_id__a_uuid_not_given() -> None:
    raw = entry()
    del raw["id"]
    parsed = entry_parse(raw, now=NOW)
    assert not parsed.id_given and len(parsed.id) == 36
    assert entry_parse(raw, now=NOW).id != parsed.id


def test_sample_draw__fixed_by_the_id() -> None:
    assert sample_draw("txn-1") == pytest.approx(0.823861651132171, abs=0)
    assert 0.0 <= sample_draw("") < 1.0


@pytest.mark.parametrize("raw", [None, [], "entry", 1])
def test_entry_parse__not_an_object__refused(raw: Any) -> None:
    refused(raw, "entry", "entry must be an object")


@pytest.mark.parametrize("part", ["decision", "context"])
def test_entry_parse__a_part_not_an_object__refused(part: str) -> None:
    refused({**entry(), part: ["x"]}, part, f"{part} must be an object")


# --- Strings and their limits -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "key", "field", "limit"),
    [
        ("", "id", "id", 128),
        ("", "agentId", "agentId", 100),
        ("", "sessionId", "sessionId", 200),
        ("decision", "action", "decision.action", 100),
        ("decision", "reasoning", "decision.reasoning", 4000),
        ("decision", "thresholdName", "decision.thresholdName", 100),
        ("context", "inputHash", "context.inputHash", 200),
    ],
)
def test_entry_parse__string_at_its_limit__accepted_one_more__refused(
    where: str, key: str, field: str, limit: int
) -> None:
    def with_value(value: str) -> dict[str, Any]:
        return entry(**({where: {key: value}} if where else {key: value}))

    entry_parse(with_value("a" * limit), now=NOW)
    refused(with_value("a" * (limit + 1)), field, f"{field} is longer than {limit} characters")
    refused(with_value("a\x00"), field)
    refused(with_value("\ud800"), field)
    refused(with_value(7), field, f"{field} must be a string")  # type: ignore[arg-type]


@pytest.mark.parametrize(("key", "field"), [("agentId", "agentId"), ("sessionId", "sessionId")])
def test_entry_parse__required_string_missing_or_blank__refused(key: str, field: str) -> None:
    refused({**entry(), key: None}, field, f"{field} is required")
    refused({**entry(), key: " "}, field, f"{field} must not be empty")


def test_entry_parse__blank_optional_string__kept() -> None:
    assert entry_parse(entry(decision={"reasoning": " "}), now=NOW).reasoning == " "
    assert entry_parse(entry(decision={"reasoning": None}), now=NOW).reasoning == ""


@pytest.mark.parametrize("given", ["", "  "])
def test_entry_parse__empty_id__refused(given: str) -> None:
    refused(entry(id=given), "id", "id must not be empty (leave it out to get a UUID)")


# --- Numbers -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 0.0, 1, 1.0, 0.5])
def test_entry_parse__confidence_and_threshold_used_at_their_edges__accepted(value: float) -> None:
    parsed = entry_parse(entry(decision={"confidence": value, "thresholdUsed": value}), now=NOW)
    assert (parsed.confidence, parsed.threshold_used) == (value, value)
    assert type(parsed.confidence) is float and type(parsed.threshold_used) is float


@pytest.mark.parametrize("value", [-1e-9, 1.000000001, -1, 2])
def test_entry_parse__confidence_and_threshold_used_past_their_edges__refused(value: float) -> None:
    refused(entry(decision={"confidence": value}), "decision.confidence", "decision.confidence must be between 0 and 1")
    refused(
        entry(decision={"thresholdUsed": value}),
        "decision.thresholdUsed",
        "decision.thresholdUsed must be between 0 and 1",
    )


@pytest.mark.parametrize("value", NOT_FINITE[:-1])
def test_entry_parse__confidence_not_a_finite_number__refused(value: Any) -> None:
    refused(entry(decision={"confidence": value}), "decision.confidence")
    refused(entry(decision={"thresholdUsed": value}), "decision.thresholdUsed")


def test_entry_parse__confidence_absent__none_threshold_used_absent__refused() -> None:
    assert entry_parse(entry(decision={"confidence": None}), now=NOW).confidence is None
    refused(entry(decision={"thresholdUsed": None}), "decision.thresholdUsed", "decision.thresholdUsed is required")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (True, "x must be a number"),
        ("1", "x must be a number"),
        (None, "x must be a number"),
        (math.nan, "x must be a finite number (not NaN or infinite)"),
        (math.inf, "x must be a finite number (not NaN or infinite)"),
        (10**400, "x is outside the range of a double-precision number"),
    ],
)
def test_finite_number__not_a_finite_double__refused(value: Any, message: str) -> None:
    with pytest.raises(InvalidEntry) as caught:
        finite_number(value, "x")
    assert (caught.value.field, caught.value.message) == ("x", message)


def test_finite_number__int_and_the_largest_double__accepted_as_float() -> None:
    assert finite_number(3, "x") == 3.0 and type(finite_number(3, "x")) is float
    assert finite_number(1.7976931348623157e308, "x") == 1.7976931348623157e308


# --- Features and matched rules ------------------------------------------------------------------------------


def test_entry_parse__200_features__accepted_201__refused() -> None:
    features = {f"f{i}": 0.5 for i in range(200)}
    assert len(entry_parse(entry(context={"features": features}), now=NOW).features) == 200
    refused(
        entry(context={"features": {**features, "one_more": 1.0}}),
        "context.features",
        "context.features has more than 200 features",
    )


def test_entry_parse__feature_name_of_200_characters__accepted_201__refused() -> None:
    assert entry_parse(entry(context={"features": {"n" * 200: 1.0}}), now=NOW).features == {"n" * 200: 1.0}
    refused(
        entry(context={"features": {"n" * 201: 1.0}}),
        "context.features",
        "context.features has a name longer than 200 characters",
    )


@pytest.mark.parametrize("name", ["a\x00b", "\udfff"])
def test_entry_parse__feature_name_that_cannot_be_stored__refused(name: str) -> None:
    refused(entry(context={"features": {name: 1.0}}), "context.features")


@pytest.mark.parametrize("value", NOT_FINITE)
def test_entry_parse__feature_not_a_finite_number__refused_naming_it(value: Any) -> None:
    refused(entry(context={"features": {"amount": value}}), "context.features.amount")


def test_entry_parse__integer_feature__a_float() -> None:
    features = entry_parse(entry(context={"features": {"n": 3, "x": 0.25}}), now=NOW).features
    assert features == {"n": 3.0, "x": 0.25} and type(features["n"]) is float


def test_entry_parse__features_absent__none() -> None:
    raw = entry()
    del raw["context"]["features"], raw["context"]["matchedRules"]
    parsed = entry_parse(raw, now=NOW)
    assert (parsed.features, parsed.matched_rules) == ({}, [])


def test_entry_parse__100_rules__accepted_101__refused() -> None:
    rules = [f"r{i}" for i in range(100)]
    assert entry_parse(entry(context={"matchedRules": rules}), now=NOW).matched_rules == rules
    refused(
        entry(context={"matchedRules": [*rules, "r"]}),
        "context.matchedRules",
        "context.matchedRules has more than 100 rules",
    )


def test_entry_parse__rule_name_of_200_characters__accepted_201__refused() -> None:
    assert entry_parse(entry(context={"matchedRules": ["r" * 200]}), now=NOW).matched_rules == ["r" * 200]
    refused(
        entry(context={"matchedRules": ["ok", "r" * 201]}),
        "context.matchedRules",
        "context.matchedRules has a rule longer than 200 characters",
    )


@pytest.mark.parametrize("rules", ["high_amount", [1], ["ok", None], {"a": 1}])
def test_entry_parse__rules_not_a_list_of_strings__refused(rules: Any) -> None:
    refused(
        entry(context={"matchedRules": rules}), "context.matchedRules", "context.matchedRules must be a list of strings"
    )


def test_entry_parse__rule_name_that_cannot_be_stored__refused() -> None:
    refused(entry(context={"matchedRules": ["ok", "a\x00"]}), "context.matchedRules")


# --- configVersion -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [1, 2**31 - 1])
def test_entry_parse__config_version_at_its_edges__accepted(version: int) -> None:
    assert entry_parse(entry(configVersion=version), now=NOW).config_version == version


@pytest.mark.parametrize("version", [0, -1, 2**31, True, 1.0, "1"])
def test_entry_parse__config_version_past_its_edges_or_not_whole__refused(version: Any) -> None:
    refused(
        entry(configVersion=version), "configVersion", "configVersion must be a version number (a whole number from 1)"
    )


# --- Times ---------------------------------------------------------------------------------------------------


def test_parse_time__exactly_five_minutes_ahead__accepted_a_microsecond_more__refused() -> None:
    edge = NOW + timedelta(minutes=5)
    assert parse_time(edge.isoformat(), "t", now=NOW) == edge
    with pytest.raises(InvalidEntry, match="t is more than 5 minutes in the future"):
        parse_time((edge + timedelta(microseconds=1)).isoformat(), "t", now=NOW)
    far = NOW + timedelta(days=3650)
    assert parse_time(far.isoformat(), "t", now=NOW, max_future=None) == far


@pytest.mark.parametrize(
    ("value", "max_future", "ok"),
    [
        ("2000-01-01T00:00:00+00:00", timedelta(minutes=5), True),
        ("1999-12-31T23:59:59+00:00", timedelta(minutes=5), False),
        ("0002-01-01T00:00:00+00:00", None, True),
        ("0001-12-31T00:00:00+00:00", None, False),
        ("9998-12-31T00:00:00+00:00", None, True),
        ("9999-01-01T00:00:00+00:00", None, False),
    ],
)
def test_parse_time__earliest_and_latest_year__edges(value: str, max_future: timedelta | None, ok: bool) -> None:
    if ok:
        assert parse_time(value, "t", now=NOW, max_future=max_future) == datetime.fromisoformat(value)
    else:
        with pytest.raises(InvalidEntry, match=r"t must be a time from the year (2000|2) on"):
            parse_time(value, "t", now=NOW, max_future=max_future)


def test_parse_time__earliest_year_changed__the_new_year_holds(settings: Any) -> None:
    """The earliest year is read once, and again when the setting changes (a test or a deployment's override)."""
    value = "2010-06-01T00:00:00+00:00"
    assert parse_time(value, "t", now=NOW) == datetime.fromisoformat(value)
    settings.API_EARLIEST_YEAR = 2020
    with pytest.raises(InvalidEntry, match="t must be a time from the year 2020 on"):
        parse_time(value, "t", now=NOW)
    settings.API_EARLIEST_YEAR = 2000
    assert parse_time(value, "t", now=NOW) == datetime.fromisoformat(value)


def test_parse_time__z_suffix__utc() -> None:
    assert parse_time("2026-03-02T08:00:00Z", "t", now=NOW) == NOW - timedelta(hours=1)
    assert parse_time("2026-03-02T11:00:00+02:00", "t", now=NOW) == NOW


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (1_700_000_000, "t must be an ISO 8601 string with an offset"),
        ("yesterday", "t is not an ISO 8601 time: 'yesterday'"),
        ("2026-03-02T08:00:00", "t must carry a UTC offset (e.g. 'Z' or '+02:00')"),
        ("2026-03-02TZ", "t is not an ISO 8601 time: '2026-03-02TZ'"),
    ],
)
def test_parse_time__not_an_aware_iso_time__refused(value: Any, message: str) -> None:
    with pytest.raises(InvalidEntry) as caught:
        parse_time(value, "t", now=NOW)
    assert (caught.value.field, caught.value.message) == ("t", message)


# --- Responses -----------------------------------------------------------------------------------------------


def imported(**response: Any) -> dict[str, Any]:
    return entry(humanResponse={"action": "approve", "responderId": "rita", **response})


def test_entry_parse__response_at_the_decisions_timestamp__accepted_a_microsecond_before__refused() -> None:
    parsed = entry_parse(imported(respondedAt="2026-03-02T08:00:00+00:00"), now=NOW)
    assert parsed.human_response is not None and parsed.human_response.responded_at == parsed.timestamp
    refused(
        imported(respondedAt="2026-03-02T07:59:59.999999+00:00"),
        "humanResponse.respondedAt",
        "humanResponse.respondedAt is before the decision's timestamp",
    )


def test_entry_parse__imported_response_without_responder__refused() -> None:
    refused(imported(responderId=""), "humanResponse.responderId", "humanResponse.responderId is required")
    refused(imported(responderId=None), "humanResponse.responderId", "humanResponse.responderId is required")


def test_response_parse__minimal_body__now_and_no_responder() -> None:
    assert response_parse({"action": "dismiss"}, now=NOW, name="") == ResponseInput(
        action="dismiss", responded_at=NOW, responder_id=""
    )


@pytest.mark.parametrize(("name", "field"), [("", "action"), ("humanResponse", "humanResponse.action")])
def test_response_parse__unknown_action__refused_naming_the_field(name: str, field: str) -> None:
    with pytest.raises(InvalidEntry) as caught:
        response_parse({"action": "ignore"}, now=NOW, name=name)
    assert (caught.value.field, caught.value.message) == (
        field,
        f"{field} must be one of approve, dismiss, modify, escalate, not 'ignore'",
    )


@pytest.mark.parametrize("action", ["approve", "dismiss", "modify", "escalate"])
def test_response_parse__each_action__accepted(action: str) -> None:
    assert response_parse({"action": action, "modifiedAction": "flag"}, now=NOW, name="").action == action


@pytest.mark.parametrize("modified", [None, ""])
def test_response_parse__modify_without_modified_action__refused(modified: str | None) -> None:
    with pytest.raises(InvalidEntry) as caught:
        response_parse({"action": "modify", "modifiedAction": modified}, now=NOW, name="")
    assert (caught.value.field, caught.value.message) == (
        "modifiedAction",
        "modifiedAction is required when action is modify",
    )


def test_response_parse__note_of_4000_characters__accepted_4001__refused() -> None:
    assert response_parse({"action": "approve", "note": "n" * 4000}, now=NOW, name="").note == "n" * 4000
    with pytest.raises(InvalidEntry, match="note is longer than 4000 characters"):
        response_parse({"action": "approve", "note": "n" * 4001}, now=NOW, name="")


def test_response_parse__action_of_more_than_20_characters__refused() -> None:
    with pytest.raises(InvalidEntry, match="action is longer than 20 characters"):
        response_parse({"action": "a" * 21}, now=NOW, name="")


@pytest.mark.parametrize("ttr", [0, 0.0, 1800, MAX_TIME_TO_RESPOND])
def test_response_parse__time_to_respond_within_its_range__accepted(ttr: float) -> None:
    parsed = response_parse({"action": "approve", "timeToRespond": ttr}, now=NOW, name="")
    assert parsed.time_to_respond == ttr and type(parsed.time_to_respond) is float


@pytest.mark.parametrize("ttr", [-0.001, MAX_TIME_TO_RESPOND + 1, *NOT_FINITE[:-1]])
def test_response_parse__time_to_respond_outside_its_range_or_not_finite__refused(ttr: Any) -> None:
    with pytest.raises(InvalidEntry) as caught:
        response_parse({"action": "approve", "timeToRespond": ttr}, now=NOW, name="")
    assert caught.value.field == "timeToRespond"


def test_response_parse__time_to_respond_out_of_range__says_the_range() -> None:
    with pytest.raises(InvalidEntry) as caught:
        response_parse({"action": "approve", "timeToRespond": -1}, now=NOW, name="")
    assert caught.value.message == "timeToRespond must be between 0 and 315576000 seconds (ten years)"


# --- What the database cannot store, anywhere in a body -----------------------------------------------------


def test_text_problem__nul_and_unpaired_surrogate__each_said() -> None:
    assert text_problem("fine é ✓") is None
    assert text_problem("a\x00") == "contains a NUL character (\\u0000), which cannot be stored"
    assert text_problem("\ud800") == "contains an unpaired surrogate (such as \\ud800), which is not valid Unicode"


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"a": {"b": ["ok", "x\x00"]}}, "a.b[1]", "a.b[1] contains a NUL character"),
        (["\ud800"], "[0]", "[0] contains an unpaired surrogate"),
        ({"a": {"k\x00": 1}}, "a", "a has a name that contains a NUL character"),
        ({"k\x00": 1}, "body", "body has a name that contains a NUL character"),
        ("\x00", "body", "body contains a NUL character"),
    ],
)
def test_tree_check__unstorable_text_anywhere__refused_naming_where(body: Any, field: str, message: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        tree_check(body, "")
    assert caught.value.field == field and caught.value.message.startswith(message)


def test_tree_check__storable_values_of_every_kind__accepted() -> None:
    tree_check({"a": [1, 2.5, None, True, {"b": "c"}], 3: "x"}, "")


def test_json_load__malformed_or_too_deep__refused_as_a_validation_error() -> None:
    assert json_load(b'{"a": [1]}') == {"a": [1]}
    with pytest.raises(ValidationFailed, match="body is not valid JSON"):
        json_load(b"{")
    with pytest.raises(ValidationFailed, match=f"body nests deeper than {MAX_DEPTH} levels"):
        json_load("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValidationFailed, match="body is not valid JSON"):
        json_load(b"\xff")


# --- Every refusal names its field, under both prefixes -------------------------------------------------------


@pytest.mark.parametrize(("name", "prefix"), [("", ""), ("humanResponse", "humanResponse."), ("r", "r.")])
@pytest.mark.parametrize(
    ("body", "key", "message"),
    [
        ({"action": None}, "action", "is required"),
        ({"action": "approve", "modifiedAction": 5}, "modifiedAction", "must be a string"),
        ({"action": "approve", "modifiedAction": "m" * 101}, "modifiedAction", "is longer than 100 characters"),
        ({"action": "modify"}, "modifiedAction", "is required when action is modify"),
        ({"action": "approve", "note": 5}, "note", "must be a string"),
        ({"action": "approve", "respondedAt": "soon"}, "respondedAt", "is not an ISO 8601 time: 'soon'"),
        ({"action": "approve", "responderId": 5}, "responderId", "must be a string"),
        ({"action": "approve", "responderId": "r" * 201}, "responderId", "is longer than 200 characters"),
        ({"action": "approve", "timeToRespond": math.nan}, "timeToRespond", "must be a finite number"),
        ({"action": "approve", "timeToRespond": -1}, "timeToRespond", "must be between 0 and 315576000 seconds"),
    ],
)
def test_response_parse__each_refusal__names_its_field_under_the_prefix(
    name: str, prefix: str, body: dict[str, Any], key: str, message: str
) -> None:
    with pytest.raises(InvalidEntry) as caught:
        response_parse(body, now=NOW, name=name)
    assert caught.value.field == prefix + key
    assert caught.value.message.startswith(f"{prefix}{key} {message}")


@pytest.mark.parametrize(("name", "field"), [("", "body"), ("humanResponse", "humanResponse")])
def test_response_parse__not_an_object__refused_naming_it(name: str, field: str) -> None:
    with pytest.raises(InvalidEntry) as caught:
        response_parse(["approve"], now=NOW, name=name)
    assert (caught.value.field, caught.value.message) == (field, f"{field} must be an object")


def test_entry_parse__bad_imported_response__named_under_human_response() -> None:
    refused(
        imported(action="ignore"),
        "humanResponse.action",
        "humanResponse.action must be one of approve, dismiss, modify, escalate, not 'ignore'",
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "timestamp must be an ISO 8601 string with an offset"),
        ("2026-03-02T08:00:00", "timestamp must carry a UTC offset (e.g. 'Z' or '+02:00')"),
        ("2026-03-02T10:00:00Z", "timestamp is more than 5 minutes in the future"),
        ("1999-03-02T10:00:00Z", "timestamp must be a time from the year 2000 on, not '1999-03-02T10:00:00Z'"),
        # Python's fromisoformat reads each of these as 08:00 UTC.
        ("2026-03-02T08:00:00\x00Z", "timestamp is not an ISO 8601 time: '2026-03-02T08:00:00\\x00Z'"),
        ("2026-03-02T08:00:00Z\x00", "timestamp is not an ISO 8601 time: '2026-03-02T08:00:00Z\\x00'"),
        ("2026-03-02\x0008:00:00+00:00", "timestamp is not an ISO 8601 time: '2026-03-02\\x0008:00:00+00:00'"),
        ("2026-03-02T08:00:00\n+00:00", "timestamp is not an ISO 8601 time: '2026-03-02T08:00:00\\n+00:00'"),
    ],
)
def test_entry_parse__bad_timestamp__refused_naming_it(value: Any, message: str) -> None:
    refused(entry(timestamp=value), "timestamp", message)


def test_parse_time__a_long_value__quoted_to_40_characters() -> None:
    with pytest.raises(InvalidEntry) as caught:
        parse_time("x" * 50, "t", now=NOW)
    assert caught.value.message == f"t is not an ISO 8601 time: {'x' * 40!r}"
    old = "1999-01-01T00:00:00.000000+00:00:00.000000"  # 42 characters, an offset with seconds
    with pytest.raises(InvalidEntry) as caught:
        parse_time(old, "t", now=NOW)
    assert caught.value.message == f"t must be a time from the year 2000 on, not {old[:40]!r}"


@pytest.mark.parametrize(
    ("raw", "field", "message"),
    [
        (entry(agentId="a\x00"), "agentId", "agentId contains a NUL character (\\u0000), which cannot be stored"),
        (entry(context={"features": [1.0]}), "context.features", "context.features must be an object"),
        (
            entry(context={"features": {"a\x00": 1.0}}),
            "context.features",
            "context.features has a name that contains a NUL character (\\u0000), which cannot be stored",
        ),
        (
            entry(context={"matchedRules": ["a\x00"]}),
            "context.matchedRules",
            "context.matchedRules has a rule that contains a NUL character (\\u0000), which cannot be stored",
        ),
    ],
)
def test_entry_parse__unstorable_text__the_whole_message(raw: Any, field: str, message: str) -> None:
    refused(raw, field, message)
