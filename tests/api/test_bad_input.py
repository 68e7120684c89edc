"""Every case of the contract's "Bad input" list: a 4xx naming the field, and nothing written."""

import json
from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from auditlog.models import Decision
from tests.api.conftest import rows
from tests.conftest import client_for
from tests.factories import entry, make_agent

URL = "/api/v1/decisions"


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(body: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = body
        for part in parents:
            target = target[part]
        target[last] = value

    return change


ENTRY_CASES = [
    # (case, change to a valid entry, status, field)
    ("unknown agent", _set("agentId", "nobody"), 400, "agentId"),
    ("unknown action", _set("decision.action", "block"), 400, "decision.action"),
    ("confidence above 1", _set("decision.confidence", 1.01), 400, "decision.confidence"),
    ("confidence below 0", _set("decision.confidence", -0.1), 400, "decision.confidence"),
    ("confidence NaN", _set("decision.confidence", float("nan")), 400, "decision.confidence"),
    ("threshold infinite", _set("decision.thresholdUsed", float("inf")), 400, "decision.thresholdUsed"),
    ("feature infinite", _set("context.features.amount_z", float("-inf")), 400, "context.features.amount_z"),
    ("feature NaN", _set("context.features.night", float("nan")), 400, "context.features.night"),
    ("feature a string", _set("context.features.amount_z", "high"), 400, "context.features.amount_z"),
    ("feature a boolean", _set("context.features.night", True), 400, "context.features.night"),
    ("features not an object", _set("context.features", [1, 2]), 400, "context.features"),
    ("timestamp without offset", _set("timestamp", "2026-03-02T08:00:00"), 400, "timestamp"),
    ("timestamp 6 minutes ahead", _set("timestamp", "2026-03-02T09:06:00Z"), 400, "timestamp"),
    ("timestamp not a time", _set("timestamp", "yesterday"), 400, "timestamp"),
    ("201 features", _set("context.features", {f"f{i}": 1.0 for i in range(201)}), 400, "context.features"),
    ("101 matched rules", _set("context.matchedRules", [f"r{i}" for i in range(101)]), 400, "context.matchedRules"),
    ("matched rule not a string", _set("context.matchedRules", ["ok", 3]), 400, "context.matchedRules"),
    ("4001 characters of reasoning", _set("decision.reasoning", "x" * 4001), 400, "decision.reasoning"),
    ("unknown thresholdName", _set("decision.thresholdName", "nope"), 400, "decision.thresholdName"),
    ("missing sessionId", _set("sessionId", None), 400, "sessionId"),
    ("empty id", _set("id", ""), 400, "id"),
    (
        "4001 characters of note",
        _set("humanResponse", {"action": "approve", "responderId": "rita", "note": "n" * 4001}),
        400,
        "humanResponse.note",
    ),
    (
        "modify without modifiedAction",
        _set("humanResponse", {"action": "modify", "responderId": "rita"}),
        400,
        "humanResponse.modifiedAction",
    ),
    (
        "unknown response action",
        _set("humanResponse", {"action": "ignore", "responderId": "rita"}),
        400,
        "humanResponse.action",
    ),
    # Issue 11: each of these was a 500 on PostgreSQL (and, in a batch, sank the valid entries beside it).
    ("NUL in reasoning", _set("decision.reasoning", "over\u0000limit"), 400, "decision.reasoning"),
    ("NUL in sessionId", _set("sessionId", "s\u0000"), 400, "sessionId"),
    ("NUL in id", _set("id", "id-\u0000"), 400, "id"),
    ("NUL in a feature name", _set("context.features", {"amount\u0000": 1.0}), 400, "context.features"),
    ("NUL in a matched rule", _set("context.matchedRules", ["r\u0000"]), 400, "context.matchedRules"),
    ("NUL in inputHash", _set("context.inputHash", "\u0000"), 400, "context.inputHash"),
    ("lone surrogate in reasoning", _set("decision.reasoning", "\ud800"), 400, "decision.reasoning"),
    ("lone surrogate in sessionId", _set("sessionId", "x\udfff"), 400, "sessionId"),
    ("400-digit confidence", _set("decision.confidence", 10**400), 400, "decision.confidence"),
    ("400-digit feature", _set("context.features.amount_z", -(10**400)), 400, "context.features.amount_z"),
    ("timestamp in year 1", _set("timestamp", "0001-01-01T00:00:00+05:00"), 400, "timestamp"),
    ("timestamp before 2000", _set("timestamp", "1999-12-31T23:59:59Z"), 400, "timestamp"),
    ("thresholdUsed above 1", _set("decision.thresholdUsed", 1.5), 400, "decision.thresholdUsed"),
    (
        "NUL in a response note",
        _set("humanResponse", {"action": "approve", "responderId": "rita", "note": "a\u0000"}),
        400,
        "humanResponse.note",
    ),
    (
        "negative timeToRespond",
        _set("humanResponse", {"action": "approve", "responderId": "rita", "timeToRespond": -1}),
        400,
        "humanResponse.timeToRespond",
    ),
]


def _send(client: APIClient, body: Any, url: str = URL) -> Any:
    # allow_nan: NaN and Infinity go out as the bare words many JSON encoders write; NUL characters and lone
    # surrogates go out as the JSON escapes \\u0000 and \\ud800, as any client sends them.
    return client.post(url, data=json.dumps(body, allow_nan=True), content_type="application/json")


@pytest.mark.django_db
@pytest.mark.parametrize(("case", "change", "status", "field"), ENTRY_CASES, ids=[c[0] for c in ENTRY_CASES])
def test_post_decision__bad_input__4xx_naming_field_nothing_written(agent_client, case, change, status, field):
    body = entry()
    change(body)
    response = _send(agent_client, body)
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["field"] == field
    assert field in error["message"]
    assert rows() == (0, 0)


@pytest.mark.django_db
@pytest.mark.parametrize(("case", "change", "status", "field"), ENTRY_CASES, ids=[c[0] for c in ENTRY_CASES])
def test_batch__bad_entry__invalid_naming_field_nothing_written(agent_client, case, change, status, field):
    body = entry(id="bad-one")
    change(body)
    response = _send(agent_client, {"entries": [body]}, URL + "/batch")
    assert response.status_code == 200
    (result,) = response.json()["results"]
    assert result["status"] == "invalid"
    assert field in result["errors"]
    assert rows() == (0, 0)


@pytest.mark.django_db
def test_post_decision__agent_id_of_another_agent__403_nothing_written(agent_client):
    make_agent("fraud")
    response = _send(agent_client, entry("fraud"))
    assert response.status_code == 403
    assert response.json()["error"]["field"] == "agentId"
    assert rows() == (0, 0)


@pytest.mark.django_db
def test_post_decision__body_over_1_mib__413_nothing_written(agent_client):
    body = entry(decision={"reasoning": "short"}, pad="p" * (1024 * 1024))
    response = _send(agent_client, body)
    assert response.status_code == 413
    assert response.json()["error"]["field"] == "body"
    assert rows() == (0, 0)


@pytest.mark.django_db
@pytest.mark.parametrize("url", [URL, URL + "/batch"])
@pytest.mark.parametrize("raw", ['{"id": "x", ', "not json", "\xff\xfe"])
def test_post__malformed_json__400_naming_body(agent_client, url, raw):
    response = agent_client.post(url, data=raw.encode("latin-1"), content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "body"
    assert "JSON" in response.json()["error"]["message"]
    assert rows() == (0, 0)


@pytest.mark.django_db
def test_post_decision__body_not_an_object__400(agent_client):
    response = _send(agent_client, [entry()])
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "entry"
    assert rows() == (0, 0)


# --- Responses ----------------------------------------------------------------------------------------------

RESPONSE_CASES = [
    ("modify without modifiedAction", {"action": "modify"}, 400, "modifiedAction"),
    ("modifiedAction not an action", {"action": "modify", "modifiedAction": "block"}, 400, "modifiedAction"),
    ("unknown response action", {"action": "ignore"}, 400, "action"),
    ("missing action", {"note": "hm"}, 400, "action"),
    ("4001 characters of note", {"action": "dismiss", "note": "n" * 4001}, 400, "note"),
    ("respondedAt without offset", {"action": "dismiss", "respondedAt": "2026-03-02T08:30:00"}, 400, "respondedAt"),
    (
        "respondedAt before the decision",
        {"action": "dismiss", "respondedAt": "2026-03-02T07:00:00Z"},
        400,
        "respondedAt",
    ),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("case", "body", "status", "field"), RESPONSE_CASES, ids=[c[0] for c in RESPONSE_CASES])
def test_response__bad_input__400_naming_field_nothing_written(agent_client, reviewer, case, body, status, field):
    _send(agent_client, entry(id="d-1"))
    response = _send(client_for(reviewer), body, f"{URL}/d-1/response")
    assert response.status_code == status, response.content
    assert response.json()["error"]["field"] == field
    assert field in response.json()["error"]["message"]
    assert Decision.objects.get(entry_id="d-1").response_action is None


@pytest.mark.django_db
def test_response__unknown_decision__404_naming_id(agent, reviewer):
    response = _send(client_for(reviewer), {"action": "dismiss"}, f"{URL}/nope/response")
    assert response.status_code == 404
    assert response.json()["error"]["field"] == "id"
    assert rows() == (0, 0)


@pytest.mark.django_db
def test_response__malformed_json__400(agent_client, reviewer):
    _send(agent_client, entry(id="d-1"))
    response = client_for(reviewer).post(f"{URL}/d-1/response", data="{", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "body"
    assert Decision.objects.get(entry_id="d-1").response_action is None


@pytest.mark.django_db
def test_response__body_over_1_mib__413(agent_client, reviewer):
    _send(agent_client, entry(id="d-1"))
    response = _send(client_for(reviewer), {"action": "dismiss", "pad": "p" * (1024 * 1024)}, f"{URL}/d-1/response")
    assert response.status_code == 413
    assert Decision.objects.get(entry_id="d-1").response_action is None


@pytest.mark.django_db
def test_reads__bad_filters__400_naming_the_parameter(agent_client):
    for query, field in [
        ("from=yesterday", "from"),
        ("to=2026-03-02T08:00:00", "to"),
        ("hasHumanResponse=maybe", "hasHumanResponse"),
        ("limit=0", "limit"),
        ("limit=5000", "limit"),
        ("cursor=bm9wZQ", "cursor"),
    ]:
        response = agent_client.get(f"{URL}?{query}")
        assert response.status_code == 400, query
        assert response.json()["error"]["field"] == field


# --- Issue 11: no 500 on any input ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_batch__one_poison_entry__invalid_in_its_slot_the_valid_ones_stored(agent_client):
    poison = entry(id="poison")
    poison["sessionId"] = "s\u0000"
    response = _send(agent_client, {"entries": [entry(id="ok-1"), entry(id="ok-2"), poison]}, URL + "/batch")

    assert response.status_code == 200
    assert [r["status"] for r in response.json()["results"]] == ["created", "created", "invalid"]
    assert "sessionId" in response.json()["results"][2]["errors"]
    assert rows() == (2, 2)


@pytest.mark.django_db
def test_batch__an_id_with_a_lone_surrogate__invalid_with_its_id_echoed_not_a_500(agent_client):
    # The answer names each entry by its id; orjson cannot write a lone surrogate, and this was a 500 that lost the
    # valid entry's result with it (the entry itself was stored).
    response = _send(agent_client, {"entries": [entry(id="ok-1"), entry(id="x\ud800")]}, URL + "/batch")

    assert response.status_code == 200, response.content
    ok, bad = response.json()["results"]
    assert (ok["id"], ok["status"]) == ("ok-1", "created")
    assert (bad["id"], bad["status"]) == ("x\ud800", "invalid")
    assert "id" in bad["errors"]
    assert rows() == (1, 1)


@pytest.mark.django_db
@pytest.mark.parametrize("url", [URL, URL + "/batch", URL + "/d-1/response"])
def test_deeply_nested_json__400_naming_body(agent_client, reviewer, url):
    client = client_for(reviewer) if url.endswith("response") else agent_client
    response = client.post(url, data='{"a":' * 100_000, content_type="application/json")

    assert response.status_code == 400, response.content[:200]
    assert response.json()["error"]["field"] == "body"


@pytest.mark.django_db
def test_other_api_bodies__nul_and_nesting__400_not_500(agent, approver):
    url = f"/api/v1/agents/{agent.agent_id}/proposals"
    client = client_for(approver)
    for raw in (
        '{"thresholdName": "flag_threshold", "proposedValue": 0.66, "rationale": "a\\u0000b"}',
        '{"thresholdName": "flag_threshold", "proposedValue": 0.66, "rationale": "\\ud800"}',
        '{"a":' * 100_000,
    ):
        response = client.post(url, data=raw, content_type="application/json")
        assert response.status_code == 400, response.content[:300]


@pytest.mark.django_db
@pytest.mark.parametrize("path", [URL + "/a%00b", URL + "?agentId=a%00b", URL + "?from=%00"])
def test_nul_in_path_or_query__400_json(agent_client, path):
    response = agent_client.get(path)

    assert response.status_code == 400
    assert "NUL" in response.json()["error"]["message"]
