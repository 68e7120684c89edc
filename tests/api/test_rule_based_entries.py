"""Issue 10, item 4: a rule-based agent (Agent.rule_based) may leave ``decision.confidence`` out; the rule that
fired (``context.matchedRules``) stands for it. Every other agent must still send it."""

import json
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from auditlog.models import Decision
from tests.api.conftest import bearer, rows
from tests.factories import entry, make_agent, user_with_role

URL = "/api/v1/decisions"
RULE_THRESHOLDS = [
    {"name": "amount_rule", "value": 0.4, "action": "review", "rule": "high_amount", "scoreFeature": "amount_score"},
    {"name": "velocity_rule", "value": 0.6, "action": "review", "rule": "high_velocity"},
    {"name": "blocklist_rule", "value": 0.86, "action": "block"},
]

pytestmark = pytest.mark.django_db


def post(client: APIClient, body: Any, url: str = URL) -> Any:
    return client.post(url, data=json.dumps(body), content_type="application/json")


def rule_entry(**overrides: Any) -> dict[str, Any]:
    body = entry(
        "rules",
        decision={"action": "review", "thresholdUsed": 0.4, "thresholdName": "amount_rule"},
        context={"features": {"amount_score": 0.52}, "matchedRules": ["high_amount"]},
        **overrides,
    )
    del body["decision"]["confidence"]
    return body


@pytest.fixture
def rules_client() -> APIClient:
    _, key = make_agent("rules", actions=["allow", "review", "block"], thresholds=RULE_THRESHOLDS, rule_based=True)
    return bearer(APIClient(), key)


def test_post_decision__rule_based_agent_without_confidence__stored_and_read_back_as_null(rules_client):
    response = post(rules_client, rule_entry(id="r-1"))
    assert response.status_code == 201, response.content
    assert response.json()["decision"]["confidence"] is None
    assert response.json()["context"]["matchedRules"] == ["high_amount"]
    assert Decision.objects.get(entry_id="r-1").confidence is None
    got = rules_client.get(f"{URL}/r-1").json()
    assert got["decision"]["confidence"] is None and got["decision"]["thresholdName"] == "amount_rule"
    # Sent again, the same entry is a duplicate, not a conflict.
    assert post(rules_client, rule_entry(id="r-1")).status_code == 200


def test_post_decision__rule_based_agent_with_confidence__still_checked(rules_client):
    body = rule_entry(id="r-2")
    body["decision"]["confidence"] = 1.5
    response = post(rules_client, body)
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "decision.confidence"
    body["decision"]["confidence"] = 0.52
    assert post(rules_client, body).status_code == 201


def test_post_decision__scored_agent_without_confidence__400_naming_the_field(agent_client):
    body = entry(id="s-1")
    del body["decision"]["confidence"]
    response = post(agent_client, body)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["field"] == "decision.confidence"
    assert "decision.confidence is required" in error["message"]
    assert rows() == (0, 0)
    body["decision"]["confidence"] = None
    assert post(agent_client, body).json()["error"]["field"] == "decision.confidence"


def test_batch__confidence_left_out__stored_for_rule_based_invalid_for_others(agent_client, rules_client):
    scored = entry(id="s-2")
    del scored["decision"]["confidence"]
    response = post(agent_client, {"entries": [scored, entry(id="s-3")]}, URL + "/batch")
    results = response.json()["results"]
    assert results[0]["status"] == "invalid" and list(results[0]["errors"]) == ["decision.confidence"]
    assert results[1]["status"] == "created"
    response = post(rules_client, {"entries": [rule_entry(id="r-3"), rule_entry(id="r-4")]}, URL + "/batch")
    assert [r["status"] for r in response.json()["results"]] == ["created", "created"]
    assert list(Decision.objects.filter(entry_id__in=["r-3", "r-4"]).values_list("confidence", flat=True)) == [
        None,
        None,
    ]


def test_pages__decision_without_confidence__queue_and_decision_page_show_its_rules(rules_client):
    assert post(rules_client, rule_entry(id="r-5")).status_code == 201
    client = Client()
    client.force_login(user_with_role("reviewer", username="rita"))
    queue = client.get("/queue/")
    assert queue.status_code == 200
    assert "high_amount" in queue.content.decode()
    page = client.get("/decisions/r-5/")
    assert page.status_code == 200
    assert "review by high_amount" in page.content.decode()


def test_schema__confidence_not_required(agent_client):
    schema = Client().get("/api/schema/?format=json")
    assert schema.status_code == 200
    parts = schema.json()["components"]["schemas"]
    decision = next(v for k, v in parts.items() if k.startswith("DecisionPart"))
    assert "confidence" not in decision.get("required", [])
    assert "rule-based" in decision["properties"]["confidence"]["description"]
