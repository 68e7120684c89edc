"""Reads of agents and their live config. The live config is read through ``config_get_live`` only."""

from dataclasses import dataclass
from datetime import datetime

from django.core.cache import cache

from loopsite.cache import CacheUnavailable, cache_delete_strict
from loopsite.outbox import outbox_send
from thresholds.exceptions import AgentNotFound
from thresholds.models import Agent, ConfigVersion, ThresholdDefinition


@dataclass(frozen=True)
class LiveConfig:
    agent_pk: int
    agent_id: str
    version: int
    version_pk: int
    activated_at: datetime
    thresholds: dict[str, float]
    gates: dict[str, str]  # threshold name -> the action it gates; fixed when the agent is registered

    @property
    def etag(self) -> str:
        return f'"{self.agent_id}-v{self.version}"'


def _cache_key(agent_pk: int) -> str:
    return f"live-config:v2:{agent_pk}"  # v2: carries the gated actions


def agent_get(*, agent_id: str) -> Agent:
    try:
        return Agent.objects.get(agent_id=agent_id)
    except Agent.DoesNotExist:
        raise AgentNotFound(f"unknown agent {agent_id!r}", field="agentId") from None


def config_get_live(*, agent: Agent) -> LiveConfig:
    """The agent's live config, from the cache when it is there. Every change calls ``config_cache_clear``.

    The cache is an optimisation: with it unreachable the read misses and the config comes from the database
    (``loopsite.cache.DegradingRedisCache`` turns cache failures into misses and skipped writes)."""
    cached = cache.get(_cache_key(agent.pk))
    if cached is not None:
        return cached
    version = ConfigVersion.objects.get(agent=agent, is_live=True)
    live = LiveConfig(
        agent_pk=agent.pk,
        agent_id=agent.agent_id,
        version=version.number,
        version_pk=version.pk,
        activated_at=version.activated_at,
        thresholds={k: float(v) for k, v in version.values.items()},
        gates=dict(ThresholdDefinition.objects.filter(agent=agent).order_by().values_list("name", "action")),
    )
    cache.set(_cache_key(agent.pk), live, timeout=300)
    return live


def config_cache_clear(*, agent: Agent) -> None:
    """Drop the cached live config. When the cache cannot be reached, the delete goes to the outbox and is retried
    until it lands, so a cache that comes back does not go on serving the version this change replaced."""
    key = _cache_key(agent.pk)
    try:
        cache_delete_strict(key)
    except CacheUnavailable:
        outbox_send("cache.delete", key=key)


def config_versions_list(*, agent: Agent) -> list[ConfigVersion]:
    return list(ConfigVersion.objects.filter(agent=agent).select_related("approved_by", "proposal").order_by("-number"))


def threshold_definitions(*, agent: Agent) -> dict[str, ThresholdDefinition]:
    return {t.name: t for t in ThresholdDefinition.objects.filter(agent=agent)}
