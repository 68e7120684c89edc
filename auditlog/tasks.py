"""Celery tasks of the decision log: one-line adapters."""

import logging

from celery import shared_task
from django.db import ProgrammingError
from django.utils import timezone

from auditlog.partitions import partitions_ensure
from auditlog.retention import retention_run

logger = logging.getLogger(__name__)


@shared_task(name="auditlog.partitions_ensure", soft_time_limit=600, time_limit=660)
def partitions_ensure_task() -> list[str]:
    """Daily: the coming weeks' partitions (PostgreSQL). Making tables needs the owner role: a runtime role
    without it logs why and leaves inserts to the default partition, which never refuses one."""
    try:
        return partitions_ensure(now=timezone.now())
    except ProgrammingError as exc:
        logger.warning("partition.not_made", extra={"error": str(exc).strip(), "hint": "docs/partitions.md"})
        return []


@shared_task(name="auditlog.retention", soft_time_limit=3000, time_limit=3600)
def retention_task() -> int:
    """Weekly: archive and remove the weeks older than DECISION_RETENTION_WEEKS."""
    return sum(week.rows for week in retention_run(now=timezone.now()))
