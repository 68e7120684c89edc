"""What only the owner of a test database does to its audit trail: switch the append-only triggers off.

The application never does this (approvals.append_only has no way around the triggers). Tests do it to reset
their own database between tests and to tamper with a row on purpose, to show that ``verify_audit`` notices.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import transaction

from approvals.append_only import ROW_TRIGGER, TABLE, TRUNCATE_TRIGGER, append_only_install


@contextmanager
def append_only_suspended(connection: Any) -> Iterator[None]:
    """The triggers are off inside the block and back on (re-created) after it, in one transaction."""
    with transaction.atomic(using=connection.alias):
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                # Rows written earlier in the same transaction have foreign-key checks pending, which ALTER
                # TABLE does not allow: run them now.
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
                cursor.execute(f"ALTER TABLE {TABLE} DISABLE TRIGGER {ROW_TRIGGER}")
                cursor.execute(f"ALTER TABLE {TABLE} DISABLE TRIGGER {TRUNCATE_TRIGGER}")
            else:
                for op in ("update", "delete"):
                    cursor.execute(f"DROP TRIGGER IF EXISTS {TABLE}_no_{op}")
        yield
        append_only_install(connection)


def agent_history_remove(agent_id: str) -> None:
    """Remove an agent and everything recorded about it from the test database (a simulation test's run)."""
    from django.db import connection

    from approvals.models import AuditEvent
    from auditlog.models import Decision, DecisionKey
    from thresholds.models import Agent, ConfigVersion
    from tuner.models import Proposal

    agent = Agent.objects.filter(agent_id=agent_id).first()
    if agent is None:
        return
    with append_only_suspended(connection):
        AuditEvent.objects.filter(agent=agent).delete()
        Decision.objects.filter(agent=agent).delete()
        DecisionKey.objects.filter(agent_id=agent.pk).delete()
        ConfigVersion.objects.filter(agent=agent).update(rolled_back_version=None, proposal=None)
        ConfigVersion.objects.filter(agent=agent).delete()
        Proposal.objects.filter(agent=agent).delete()
        agent.delete()
