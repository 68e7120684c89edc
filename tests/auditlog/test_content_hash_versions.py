"""Hashes stored before version 2 (SHA-256 of a json.dumps dict) still tell a resend from a conflict."""

import re

import pytest
from rest_framework.test import APIClient

from auditlog.entry import content_hash_matches, content_hash_v1, entry_parse
from auditlog.models import Decision, DecisionKey
from tests.factories import NOW, entry

pytestmark = pytest.mark.django_db


def stored_as_version_1(body: dict[str, object]) -> None:
    """Rewrite the stored hash of ``body`` as the code before version 2 wrote it."""
    old = content_hash_v1(entry_parse(body, now=NOW))
    DecisionKey.objects.filter(entry_id=body["id"]).update(content_hash=old)
    Decision.objects.filter(entry_id=body["id"]).update(content_hash=old)


def test_new_hash__versioned_and_fits_the_column() -> None:
    parsed = entry_parse(entry(id="e-1"), now=NOW)
    assert re.fullmatch(r"v2:[0-9a-f]{60}", parsed.content_hash)
    assert len(parsed.content_hash) <= 64 == DecisionKey._meta.get_field("content_hash").max_length


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        (entry(id="pinned-1"), "v2:b88c960e68087ceb92e9ec6dec866ee675317329976bb8f84869b6c40da5"),
        (
            entry(
                id="pinned-2",
                configVersion=2,
                decision={"shadowAction": "auto-resolve", "shadowProposalId": 7},
                context={"features": {"zeta": 1.5, "alpha": -0.25, "mid": 3.0}, "matchedRules": ["b", "a"]},
                humanResponse={
                    "action": "modify",
                    "modifiedAction": "escalate",
                    "responderId": "rita",
                    "note": "n",
                    "timeToRespond": 12.5,
                },
            ),
            "v2:6a6c9b880d882bbad209100d638f8e17877dcc483d7b654d29a24a94d290",
        ),
    ],
)
def test_new_hash__as_version_2_was_first_stored(raw: dict[str, object], stored: str) -> None:
    """Hashes written by the first code of version 2, pinned: a faster way of making the hash (the features' JSON
    made once and reused, orjson.Fragment) must give the same bytes, or every stored entry would turn a conflict."""
    assert entry_parse(raw, now=NOW).content_hash == stored


def test_content_hash_matches__either_version__same_content_only() -> None:
    parsed = entry_parse(entry(id="e-1"), now=NOW)
    other = entry_parse(entry(id="e-1", sessionId="other"), now=NOW)
    assert content_hash_matches(parsed, parsed.content_hash)
    assert content_hash_matches(parsed, content_hash_v1(parsed))
    assert not content_hash_matches(other, parsed.content_hash)
    assert not content_hash_matches(other, content_hash_v1(parsed))


def test_single_post__stored_with_version_1__resend_200_other_content_409(agent_client: APIClient) -> None:
    body = entry(id="old-1")
    assert agent_client.post("/api/v1/decisions", body, format="json").status_code == 201
    stored_as_version_1(body)

    again = agent_client.post("/api/v1/decisions", body, format="json")
    assert again.status_code == 200
    assert again.json()["id"] == "old-1"
    changed = agent_client.post("/api/v1/decisions", {**body, "sessionId": "other"}, format="json")
    assert changed.status_code == 409
    assert Decision.objects.count() == 1


def test_batch__stored_with_version_1__resend_duplicate_other_content_conflict(agent_client: APIClient) -> None:
    body = entry(id="old-1")
    assert agent_client.post("/api/v1/decisions", body, format="json").status_code == 201
    stored_as_version_1(body)

    response = agent_client.post(
        "/api/v1/decisions/batch",
        {"entries": [body, {**entry(id="old-1"), "sessionId": "other"}, entry(id="new-1")]},
        format="json",
    )
    # The second is compared with the stored hash, not with the first: the first is the stored one again.
    assert [r["status"] for r in response.json()["results"]] == ["duplicate", "conflict", "created"]
    assert Decision.objects.count() == 2
