"""Migration 0005 rebuilds the registry of entry ids with the key (entry_id, agent_id): rows are kept, and from
then on two agents may use one id while one agent still may not use it twice."""

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor

from tests.factories import NOW

BEFORE = [("auditlog", "0004_decision_confidence_optional")]
AFTER = [("auditlog", "0005_decision_key_unique_per_agent")]


def registry_at(target: list[tuple[str, str]]) -> Any:
    """The registry's model as of ``target``, the database migrated there."""
    executor = MigrationExecutor(connection)
    executor.migrate(target)
    return executor.loader.project_state(target).apps.get_model("auditlog", "DecisionKey")


@pytest.fixture
def latest_again_after(transactional_db: None) -> Iterator[None]:
    try:
        yield
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.usefixtures("latest_again_after")
def test_migration_0005__rows_kept__one_id_per_agent_not_per_log() -> None:
    old = registry_at(BEFORE)
    old.objects.create(entry_id="txn-1", content_hash="h1", agent_id=1, timestamp=NOW)
    old.objects.create(entry_id="txn-2", content_hash="h2", agent_id=2, timestamp=NOW)

    new = registry_at(AFTER)

    rows = set(new.objects.values_list("entry_id", "agent_id", "content_hash", "timestamp"))
    assert rows == {("txn-1", 1, "h1", NOW), ("txn-2", 2, "h2", NOW)}
    new.objects.create(entry_id="txn-1", content_hash="other", agent_id=2, timestamp=NOW)  # another agent: fine
    with pytest.raises(IntegrityError), transaction.atomic():
        new.objects.create(entry_id="txn-1", content_hash="again", agent_id=1, timestamp=NOW)
    assert new.objects.filter(entry_id="txn-1").count() == 2
