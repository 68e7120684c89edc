"""Ids made by the server and by the agent client are UUIDv7 (RFC 9562): they sort by the millisecond made."""

import uuid

import pytest
from loopsite_client._ids import IdMaker
from rest_framework.test import APIClient

from auditlog.entry import entry_parse, uuid7
from tests.factories import NOW, entry


def layout(text: str) -> tuple[int, int, int]:
    """(version, variant bits, Unix milliseconds) of a UUID's text."""
    value = uuid.UUID(text)
    return value.version or 0, value.int >> 62 & 0b11, value.int >> 80


def test_uuid7__version_variant_and_time() -> None:
    made = uuid7(ms=1_772_438_400_123)
    assert layout(made) == (7, 0b10, 1_772_438_400_123)
    assert str(uuid.UUID(made)) == made


def test_uuid7__later_millisecond__sorts_after_as_text() -> None:
    ids = [uuid7(ms=ms) for ms in (1_000, 1_001, 2_000_000_000_000, 2_000_000_000_001)]
    assert ids == sorted(ids)
    assert len({uuid7(ms=5) for _ in range(1000)}) == 1000  # random below the millisecond


def test_entry_without_id__server_made_id_is_uuid7_of_now() -> None:
    raw = entry()
    del raw["id"]
    parsed = entry_parse(raw, now=NOW)
    version, variant, _ = layout(parsed.id)
    assert (version, variant, parsed.id_given) == (7, 0b10, False)


@pytest.mark.django_db
def test_post_without_id__answered_with_a_time_ordered_id(agent_client: APIClient) -> None:
    raw = entry()
    del raw["id"]
    response = agent_client.post("/api/v1/decisions", raw, format="json")
    assert response.status_code == 201
    assert layout(response.json()["id"])[:2] == (7, 0b10)


def test_agent_client_ids__same_layout_and_increasing() -> None:
    make = IdMaker()
    ids = [make() for _ in range(2000)]
    assert all(layout(i)[:2] == (7, 0b10) for i in ids)
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
