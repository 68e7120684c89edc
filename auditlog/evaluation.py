"""An evaluation set from a team's own verdicts: an agent's reviewed decisions with their current label.

Streamed as CSV or JSON Lines, oldest first, by the API (``GET /api/v1/agents/{agentId}/evaluation-set.csv``
or ``.jsonl``) and the admin's decision list (an action on the selected rows). The label is what the tuner
learns from (``auditlog.labels.effective_label``): approve, dismiss or escalate, after any amendment.
"""

import csv
import io
import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from django.db.models import QuerySet

from auditlog.labels import effective_label
from auditlog.models import Decision
from loopsite.replica import lagging_iteration
from thresholds.models import Agent

FORMATS = ("csv", "jsonl")
COLUMNS = (
    "id",
    "agentId",
    "timestamp",
    "action",
    "confidence",
    "thresholdName",
    "thresholdUsed",
    "configVersion",
    "label",
    "responseAction",
    "modifiedAction",
    "responderId",
    "respondedAt",
    "note",
    "inputHash",
    "features",
    "matchedRules",
)


def reviewed(agent: Agent, *, since: datetime | None = None, until: datetime | None = None) -> QuerySet[Decision]:
    """The agent's decisions with a response, in [since, until) by decision time."""
    rows = Decision.objects.filter(agent=agent, response_action__isnull=False)
    if since is not None:
        rows = rows.filter(timestamp__gte=since)
    if until is not None:
        rows = rows.filter(timestamp__lt=until)
    return rows


def evaluation_rows(decisions: QuerySet[Decision]) -> Iterator[dict[str, Any]]:
    for d in decisions.select_related("agent", "config_version").order_by("timestamp", "seq").iterator(2000):
        yield {
            "id": d.entry_id,
            "agentId": d.agent.agent_id,
            "timestamp": d.timestamp.isoformat(),
            "action": d.action,
            "confidence": d.confidence,
            "thresholdName": d.threshold_name,
            "thresholdUsed": d.threshold_used,
            "configVersion": d.config_version.number,
            "label": effective_label(d.response_action, d.modified_action, d.action, d.agent.actions),
            "responseAction": d.response_action,
            "modifiedAction": d.modified_action,
            "responderId": d.responder_id,
            "respondedAt": d.responded_at.isoformat() if d.responded_at else None,
            "note": d.response_note,
            "inputHash": d.input_hash,
            "features": d.features,
            "matchedRules": d.matched_rules,
        }


def as_jsonl(rows: Iterable[dict[str, Any]]) -> Iterator[str]:
    for row in rows:
        yield json.dumps(row, ensure_ascii=False) + "\n"


def as_csv(rows: Iterable[dict[str, Any]]) -> Iterator[str]:
    """One header line, then a line a row; features and matched rules as JSON in their cells."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS)
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {
                k: json.dumps(v, ensure_ascii=False) if k in ("features", "matchedRules") else ("" if v is None else v)
                for k, v in row.items()
            }
        )
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue()


def evaluation_stream(decisions: QuerySet[Decision], fmt: str) -> Iterator[str]:
    # An export: read from the replica when there is one, chunk by chunk as the server streams it.
    rows = lagging_iteration(evaluation_rows(decisions))
    return as_csv(rows) if fmt == "csv" else as_jsonl(rows)


CONTENT_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}
