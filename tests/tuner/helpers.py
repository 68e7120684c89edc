"""Building a window of decisions with responses for the tuner tests, through the real decision-log service."""

from datetime import datetime, timedelta
from typing import Any

from auditlog.entry import sample_draw
from auditlog.services import decision_log_batch
from tests.factories import NOW
from thresholds.models import Agent
from thresholds.selectors import config_get_live


def action_for(agent: Agent, confidence: float) -> str:
    """The strongest action whose threshold is <= the confidence, as the agent itself would decide."""
    live = config_get_live(agent=agent).thresholds
    gates = {t.name: t.action for t in agent.thresholds.all()}
    chosen = agent.weakest_action
    for name, value in sorted(live.items(), key=lambda kv: kv[1]):
        if confidence >= value:
            chosen = gates[name]
    return chosen


def log_rows(agent: Agent, rows: list[dict[str, Any]], *, now: datetime = NOW) -> list[str]:
    """Each row: confidence, at (datetime), response (or None), and optional id, features, rules, reasoning,
    modified, action. Returns the ids in order."""
    entries: list[object] = []
    for i, row in enumerate(rows):
        at: datetime = row["at"]
        entry_id = row.get("id", f"{agent.agent_id}-{i}")
        action = row.get("action") or action_for(agent, row["confidence"])
        # Reviewers only see what reached the queue: a weakest-action decision only when sampled.
        queued = action != agent.weakest_action or sample_draw(entry_id) < agent.review_sample_rate
        entry: dict[str, Any] = {
            "id": entry_id,
            "timestamp": at.isoformat(),
            "agentId": agent.agent_id,
            "sessionId": "s",
            "decision": {
                "action": action,
                "confidence": row["confidence"],
                "thresholdUsed": 0.0,
                "reasoning": row.get("reasoning", "score"),
            },
            "context": {
                "inputHash": "h",
                "features": row.get("features", {"x": row["confidence"]}),
                "matchedRules": row.get("rules", []),
            },
        }
        if row.get("response") and (queued or row.get("force_response")):
            response: dict[str, Any] = {
                "action": row["response"],
                "respondedAt": (at + timedelta(hours=1)).isoformat(),
                "responderId": "rita",
            }
            if row.get("modified"):
                response["modifiedAction"] = row["modified"]
            entry["humanResponse"] = response
        entries.append(entry)
    ids: list[str] = []
    for start in range(0, len(entries), 1000):
        results = decision_log_batch(entries=entries[start : start + 1000], now=now)
        bad = [r.as_dict() for r in results if r.status != "created"]
        assert not bad, bad[:3]
        ids.extend(str(r.id) for r in results)
    return ids


def spread(n: int, *, weeks: int = 4, now: datetime = NOW) -> list[datetime]:
    """``n`` timestamps evenly over the ``weeks`` before ``now``."""
    span = timedelta(weeks=weeks) - timedelta(hours=2)
    return [now - span + span * (i / max(1, n - 1)) - timedelta(hours=1) for i in range(n)]


def output(run: Any) -> dict[str, Any]:
    """The run's seed-format output (present once the run is done)."""
    assert run.output is not None, (run.status, run.errors)
    return dict(run.output)
