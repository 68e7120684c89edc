"""Writes: registering agents and making config versions live. A change is always a new version."""

import logging
from datetime import datetime
from typing import Any

from django.db import transaction

from people.keys import AGENT_KIND, key_generate
from thresholds.exceptions import AgentExists, InvalidThreshold
from thresholds.models import Agent, AgentKey, ConfigVersion, ThresholdDefinition
from thresholds.selectors import config_cache_clear

logger = logging.getLogger(__name__)

DEFAULT_ACTIONS = ["auto-resolve", "flag", "escalate"]


def agent_create(
    *,
    agent_id: str,
    thresholds: list[dict[str, Any]],
    now: datetime,
    name: str = "",
    actions: list[str] | None = None,
    **options: Any,
) -> tuple[Agent, str]:
    """Register an agent with its thresholds and initial config version. Returns (agent, api key).

    Each threshold is ``{"name", "value", "action"?, "min"?, "max"?, "description"?, "rule"?, "scoreFeature"?}``;
    the gated action defaults to the strongest one. For a rule-based agent, ``rule`` is the name its decisions
    report in ``matchedRules`` when this threshold's rule fires (default: the threshold's name) and
    ``scoreFeature`` the feature holding the score the rule compares with the value (default: the confidence).
    """
    actions = list(actions or DEFAULT_ACTIONS)
    if len(actions) < 2 or len(set(actions)) != len(actions):
        raise InvalidThreshold("actions must be two or more distinct names, weakest first", field="actions")
    if not thresholds:
        raise InvalidThreshold("an agent needs at least one threshold", field="thresholds")
    values: dict[str, float] = {}
    definitions = []
    for spec in thresholds:
        tname, value = str(spec["name"]), float(spec["value"])
        action = str(spec.get("action") or actions[-1])
        lo, hi = float(spec.get("min", 0.0)), float(spec.get("max", 1.0))
        if tname in values:
            raise InvalidThreshold(f"threshold {tname!r} given twice", field="thresholds")
        if action not in actions[1:]:
            raise InvalidThreshold(
                f"threshold {tname!r} gates {action!r}, which is not one of the agent's actions above the "
                f"weakest ({', '.join(actions[1:])})",
                field="thresholds",
            )
        if not lo <= value <= hi:
            raise InvalidThreshold(f"threshold {tname!r} value {value} is outside [{lo}, {hi}]", field="thresholds")
        values[tname] = value
        rule_name = _optional_name(spec, "rule", tname)
        score_feature = _optional_name(spec, "scoreFeature", tname, alias="score_feature")
        definitions.append(
            ThresholdDefinition(
                name=tname,
                action=action,
                min_value=lo,
                max_value=hi,
                description=str(spec.get("description", "")),
                rule=rule_name,
                score_feature=score_feature,
            )
        )
    with transaction.atomic():
        if Agent.objects.filter(agent_id=agent_id).exists():
            raise AgentExists(f"agent {agent_id!r} exists already", field="agentId")
        agent = Agent.objects.create(agent_id=agent_id, name=name or agent_id, actions=actions, **options)
        for d in definitions:
            d.agent = agent
        ThresholdDefinition.objects.bulk_create(definitions)
        ConfigVersion.objects.create(
            agent=agent,
            number=1,
            values=values,
            source=ConfigVersion.Source.INITIAL,
            is_live=True,
            activated_at=now,
            reason="initial thresholds",
        )
        key = agent_key_create(agent=agent)
    logger.info("agent.created", extra={"agent_id": agent_id, "thresholds": values})
    return agent, key


def _optional_name(spec: dict[str, Any], key: str, threshold: str, *, alias: str = "") -> str:
    """A threshold's optional rule or score feature name: a non-blank string of at most 200 characters, or ""."""
    value = spec.get(key, spec.get(alias) if alias else None)
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or not value.strip() or len(value) > 200 or "\x00" in value:
        raise InvalidThreshold(
            f"threshold {threshold!r} {key} must be a name of at most 200 characters", field="thresholds"
        )
    return value


def agent_key_create(*, agent: Agent, name: str = "default") -> str:
    new = key_generate(kind=AGENT_KIND)
    AgentKey.objects.create(agent=agent, name=name, prefix=new.prefix, hashed_key=new.hashed_key)
    return new.key


def config_version_activate(
    *,
    agent: Agent,
    values: dict[str, float],
    source: str,
    now: datetime,
    reason: str = "",
    approved_by: Any = None,
    proposal: Any = None,
    rolled_back_version: ConfigVersion | None = None,
) -> ConfigVersion:
    """Make a new version live, atomically: the old one stops being live in the same transaction.

    Callers check the rules (the gate, the 20 % bound); this only keeps the versions consistent. Must run
    inside the caller's transaction when the caller writes an audit row for it.
    """
    with transaction.atomic():
        current = ConfigVersion.objects.select_for_update().get(agent=agent, is_live=True)
        ConfigVersion.objects.filter(pk=current.pk).update(is_live=False, superseded_at=now)
        version = ConfigVersion.objects.create(
            agent=agent,
            number=_next_number(agent),
            values=values,
            source=source,
            is_live=True,
            activated_at=now,
            reason=reason,
            approved_by=approved_by,
            proposal=proposal,
            rolled_back_version=rolled_back_version,
        )
        if source in (ConfigVersion.Source.ROLLBACK, ConfigVersion.Source.MANUAL):
            # Values restored under a serving canary move its control: it is aborted with them. (A promotion is
            # a proposal version; the canary's own abort has closed it already.)
            from rollouts.services import canary_end_by_rollback

            canary_end_by_rollback(agent=agent, rollback=version, now=now)
        transaction.on_commit(lambda: config_cache_clear(agent=agent))
    config_cache_clear(agent=agent)
    logger.info(
        "config.activated",
        extra={"agent_id": agent.agent_id, "version": version.number, "source": source, "values": values},
    )
    return version


def _next_number(agent: Agent) -> int:
    """The next version number: after the newest version, live or not (a canary arm's is never live)."""
    newest = ConfigVersion.objects.filter(agent=agent).order_by("-number").values_list("number", flat=True).first()
    return (newest or 0) + 1


def config_version_add_canary(
    *, agent: Agent, values: dict[str, float], now: datetime, reason: str, approved_by: Any, proposal: Any
) -> ConfigVersion:
    """A canary arm's version: numbered like any version, so its entries name it in ``configVersion``, but never
    live for everyone (``is_live`` stays on the control). Callers hold the agent's lock (``approvals.guard``)."""
    version = ConfigVersion.objects.create(
        agent=agent,
        number=_next_number(agent),
        values=values,
        source=ConfigVersion.Source.CANARY,
        is_live=False,
        activated_at=now,
        reason=reason,
        approved_by=approved_by,
        proposal=proposal,
    )
    transaction.on_commit(lambda: config_cache_clear(agent=agent))
    config_cache_clear(agent=agent)
    logger.info("config.canary", extra={"agent_id": agent.agent_id, "version": version.number, "values": values})
    return version
