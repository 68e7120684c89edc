"""The flat-row writers (COPY on PostgreSQL, executemany on SQLite, the one-statement insert) store what a
model save would: the same row from a single POST and from a batch, read back through the API."""

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from auditlog.models import Decision, DecisionKey
from auditlog.services import DECISION_COLUMNS, KEY_COLUMNS, _known_hashes, decision_log_batch
from tests.factories import entry, make_agent

pytestmark = pytest.mark.django_db

SAME_FOR_BOTH = [c for c in DECISION_COLUMNS if c not in ("entry_id", "content_hash", "received_at")]


def stored(entry_id: str) -> dict[str, Any]:
    return Decision.objects.filter(entry_id=entry_id).values(*SAME_FOR_BOTH).get()


def test_writers__every_column_of_the_model_written() -> None:
    assert {f.attname for f in Decision._meta.concrete_fields} - set(DECISION_COLUMNS) == {"seq"}
    assert {f.attname for f in DecisionKey._meta.concrete_fields} - set(KEY_COLUMNS) == {"id"}


def test_single_post_and_batch__same_row_stored(agent_client: APIClient) -> None:
    response = {"action": "modify", "modifiedAction": "escalate", "responderId": "rita", "note": "late"}
    bodies: dict[str, dict[str, Any]] = {
        "plain": {"decision": {"action": "escalate", "confidence": 0.9, "thresholdUsed": 0.85}},
        "answered": {"humanResponse": {**response, "respondedAt": "2026-03-02T09:30:00+01:00"}},
        "weakest": {"decision": {"action": "auto-resolve", "confidence": 0.1, "thresholdUsed": 0.6}},
        # What text and binary COPY could each get wrong: escapes, non-ASCII, extreme floats, offsets, microseconds.
        "awkward": {
            "timestamp": "2026-03-02T13:29:59.123456+05:30",
            "sessionId": 'sess\tion \\ "q" é 🚀',
            "decision": {
                "confidence": 0.1 + 0.2,
                "reasoning": "line one\nline two\ttabbed \\N not null, \\x01 ünïcødé 🚀",
                "shadowAction": "escalate",
            },
            "context": {
                "inputHash": "sha256:\\.",
                "features": {"größe": -1.5e10, "tiny": 5e-324, "neg_zero": -0.0, "tab\tname": 1.5},
                "matchedRules": ["back\\slash", 'quote"d', "ünï"],
            },
            "humanResponse": {**response, "respondedAt": "2026-03-02T09:00:00.000001Z", "timeToRespond": 2.5},
        },
    }
    for name, overrides in bodies.items():
        one = agent_client.post("/api/v1/decisions", entry(id=f"one-{name}", **overrides), format="json")
        assert one.status_code == 201, one.content
        batch = agent_client.post(
            "/api/v1/decisions/batch", {"entries": [entry(id=f"batch-{name}", **overrides)]}, format="json"
        )
        assert batch.json()["results"] == [{"id": f"batch-{name}", "status": "created"}]
        assert stored(f"one-{name}") == stored(f"batch-{name}")
        keys = DecisionKey.objects.filter(entry_id__in=[f"one-{name}", f"batch-{name}"]).values_list("timestamp")
        assert len(set(keys)) == 1 and len(keys) == 2
        read_one = agent_client.get(f"/api/v1/decisions/one-{name}").json()
        read_batch = agent_client.get(f"/api/v1/decisions/batch-{name}").json()
        assert {**read_one, "id": None} == {**read_batch, "id": None}
        if name == "answered":
            assert read_batch["humanResponse"] == {
                "action": "modify",
                "modifiedAction": "escalate",
                "responderId": "rita",
                "note": "late",
                "respondedAt": "2026-03-02T08:30:00Z",
                "timeToRespond": 1800.0,
            }
        posted = one.json()
        assert {k: v for k, v in posted.items() if k != "id"} == {k: read_one[k] for k in posted if k != "id"}


def test_single_post__answer_is_the_stored_entry(agent_client: APIClient) -> None:
    posted = agent_client.post("/api/v1/decisions", entry(id="d-1"), format="json").json()
    read = agent_client.get("/api/v1/decisions/d-1").json()
    assert {k: posted[k] for k in posted} == {k: read[k] for k in posted}
    assert posted["timestamp"] == "2026-03-02T08:00:00Z"
    assert posted["context"] == {
        "inputHash": "sha256:abc",
        "features": {"amount_z": 3.2, "night": 1.0},
        "matchedRules": ["high_amount"],
    }


def test_batch_rows__found_by_time_range(agent_client: APIClient) -> None:
    entries = [entry(id=f"t-{h}", timestamp=f"2026-03-02T0{h}:00:00+00:00") for h in range(1, 6)]
    assert agent_client.post("/api/v1/decisions/batch", {"entries": entries}, format="json").status_code == 200
    page = agent_client.get(
        "/api/v1/decisions", {"agentId": "triage", "from": "2026-03-02T02:00:00Z", "to": "2026-03-02T04:00:00Z"}
    ).json()
    assert sorted(d["id"] for d in page["results"]) == ["t-2", "t-3"]


def test_known_hashes__per_agent_only_the_stored_ids(agent_client: APIClient, agent: Any) -> None:
    agent_client.post("/api/v1/decisions/batch", {"entries": [entry(id="k-1"), entry(id="k-2")]}, format="json")
    stored_hashes = dict(DecisionKey.objects.values_list("entry_id", "content_hash"))

    known = _known_hashes([(agent.pk, "k-1"), (agent.pk, "k-2"), (agent.pk, "k-3"), (agent.pk + 1, "k-1")])
    assert known == {(agent.pk, "k-1"): stored_hashes["k-1"], (agent.pk, "k-2"): stored_hashes["k-2"]}


def test_batch_without_a_key__each_agent_read_once_and_an_unknown_one_refused(agent: Any) -> None:
    make_agent("fraud")
    bodies: list[object] = [entry("triage" if i % 2 else "fraud") for i in range(40)] + [entry("nobody")]

    with CaptureQueriesContext(connection) as queries:
        results = decision_log_batch(entries=bodies, now=timezone.now())

    agent_reads = [q["sql"] for q in queries.captured_queries if 'FROM "thresholds_agent"' in q["sql"]]
    assert [r.status for r in results] == ["created"] * 40 + ["invalid"]
    assert results[-1].errors == {"agentId": "agentId 'nobody' is not a registered agent"}
    assert len(agent_reads) == 3  # triage, fraud, and the unknown one
    assert Decision.objects.filter(agent__agent_id="fraud").count() == 20


def _registry_reads(queries: CaptureQueriesContext) -> list[str]:
    table = DecisionKey._meta.db_table
    return [q["sql"] for q in queries.captured_queries if "SELECT" in q["sql"].upper() and table in q["sql"]]


def test_batch_of_new_ids__written_without_looking_them_up(agent_client: APIClient) -> None:
    # The registry's unique constraint refuses a stored id by itself: a batch of new ids costs no look-up.
    with CaptureQueriesContext(connection) as queries:
        response = agent_client.post(
            "/api/v1/decisions/batch", {"entries": [entry(id=f"new-{i}") for i in range(5)]}, format="json"
        )

    assert [r["status"] for r in response.json()["results"]] == ["created"] * 5
    assert _registry_reads(queries) == []
    assert DecisionKey.objects.count() == Decision.objects.count() == 5


def test_batch_resent_with_one_changed_and_one_new__each_settled_and_nothing_stored_twice(
    agent_client: APIClient,
) -> None:
    first = [entry(id="r-1"), entry(id="r-2"), entry(id="r-3")]
    agent_client.post("/api/v1/decisions/batch", {"entries": first}, format="json")
    again = [entry(id="r-1"), entry(id="r-2", sessionId="changed"), entry(id="r-4"), entry(id="r-3")]

    response = agent_client.post("/api/v1/decisions/batch", {"entries": again}, format="json")

    assert response.json()["results"] == [
        {"id": "r-1", "status": "duplicate"},
        {"id": "r-2", "status": "conflict", "errors": {"id": "exists already with other content"}},
        {"id": "r-4", "status": "created"},
        {"id": "r-3", "status": "duplicate"},
    ]
    assert sorted(Decision.objects.values_list("entry_id", flat=True)) == ["r-1", "r-2", "r-3", "r-4"]
    assert DecisionKey.objects.count() == 4
    assert Decision.objects.get(entry_id="r-2").session_id == first[1]["sessionId"]


def test_single_post__key_and_live_config_kept__no_database_read(agent_client: APIClient) -> None:
    assert agent_client.post("/api/v1/decisions", entry(id="warm"), format="json").status_code == 201

    with CaptureQueriesContext(connection) as queries:
        response = agent_client.post("/api/v1/decisions", entry(id="hot"), format="json")

    assert response.status_code == 201
    statements = [
        q["sql"] for q in queries.captured_queries if not q["sql"].upper().startswith(("SAVEPOINT", "RELEASE"))
    ]
    # The registry row and the decision: one statement on PostgreSQL, one INSERT each on SQLite; nothing read.
    assert len(statements) == (1 if connection.vendor == "postgresql" else 2), statements
    assert not [s for s in statements if s.upper().startswith("SELECT")]


def _redis_commands_sent(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every command (or pipeline) sent to Redis from now on: one entry per round trip."""
    from redis.connection import AbstractConnection

    sent: list[Any] = []
    original = AbstractConnection.send_packed_command

    def counted(self: Any, command: Any, check_health: bool = True) -> None:
        sent.append(command)
        original(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counted)
    return sent


@pytest.mark.configured
@pytest.mark.parametrize("path", ["/api/v1/decisions", "/api/v1/decisions/batch"])
def test_logging__one_round_trip_to_redis(agent_client: APIClient, monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    """The failed-key count, the agent keys' stamp, the agent's live-config stamp and the agent's request count in
    one command: logging waits for Redis once (it used to be six times, then three, then two)."""

    def body(entry_id: str) -> dict[str, Any]:
        return entry(id=entry_id) if path.endswith("decisions") else {"entries": [entry(id=entry_id)]}

    assert agent_client.post(path, body("warm"), format="json").status_code in (200, 201)
    sent = _redis_commands_sent(monkeypatch)
    response = agent_client.post(path, body("hot"), format="json")
    assert response.status_code in (200, 201), response.content
    assert len(sent) == 1, sent
    commands = b"".join(sent[0])
    assert b"live-config:stamp:" in commands and b"agent-keys:stamp" in commands, commands
    assert b"throttle:agent:" in commands and b"EVALSHA" in commands, commands  # counted by the throttle's script
