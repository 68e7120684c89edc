"""A canary as the API and the proposal's page show it."""

from typing import Any

from django.utils import timezone

from rollouts.models import Canary
from rollouts.selectors import canary_arm_sizes, canary_summary


def _iso(value: Any) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def canary_render(canary: Canary) -> dict[str, Any]:
    arms = canary_arm_sizes(canary=canary, now=timezone.now())
    return {
        "id": canary.pk,
        "agentId": canary.agent.agent_id,
        "proposalId": canary.proposal_id,
        "thresholdName": canary.threshold_name,
        "share": canary.share,
        "version": canary.version.number,
        "controlVersion": canary.control.number,
        "values": {k: float(v) for k, v in canary.version.values.items()},
        "state": canary.state,
        "startedAt": _iso(canary.started_at),
        "endsAt": _iso(canary.ends_at),
        "startedBy": canary.started_by.get_username(),
        "endedAt": _iso(canary.ended_at),
        "endedBy": canary.ended_label or None,
        "resultVersion": canary.result.number if canary.result is not None else None,
        "summary": canary_summary(canary),
        "assessment": canary.assessment or None,
        "arms": {
            name: {"decisions": size.decisions, "sessions": size.sessions, "offArm": size.off_arm}
            for name, size in arms.items()
        },
    }
