"""Reads of agents and their live config. The live config is read through ``config_get_live`` only."""

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.core.cache import cache

from loopsite.cache import stamp_get, stamps_delete
from loopsite.kept import keep
from thresholds.exceptions import AgentNotFound
from thresholds.models import Agent, ConfigVersion, ThresholdDefinition

if TYPE_CHECKING:
    from tuner.models import Proposal


@dataclass(frozen=True)
class CanaryArm:
    """A serving canary as the live config carries it: its arm's version and values, and the share of sessions
    (``rollouts.arms.in_canary``) that run under them."""

    version: int
    version_pk: int
    share: float
    values: dict[str, float]


@dataclass(frozen=True)
class LiveConfig:
    agent_pk: int
    agent_id: str
    version: int
    version_pk: int
    activated_at: datetime
    thresholds: dict[str, float]
    gates: dict[str, str]  # threshold name -> the action it gates; fixed when the agent is registered
    # The pending proposal whose candidate values run in shadow ({threshold: value}), and its id.
    shadow: dict[str, float] | None = None
    shadow_proposal_id: int | None = None
    canary: CanaryArm | None = None

    @property
    def etag(self) -> str:
        shadow = f"-s{self.shadow_proposal_id}" if self.shadow_proposal_id is not None else ""
        canary = f"-c{self.canary.version}" if self.canary is not None else ""
        return f'"{self.agent_id}-v{self.version}{shadow}{canary}"'


def _cache_key(agent_pk: int) -> str:
    return f"live-config:v3:{agent_pk}"  # v2: carries the gated actions; v3: the shadow and the canary


def agent_get(*, agent_id: str) -> Agent:
    try:
        return Agent.objects.get(agent_id=agent_id)
    except Agent.DoesNotExist:
        raise AgentNotFound(f"unknown agent {agent_id!r}", field="agentId") from None


def live_stamp_key(agent_pk: int) -> str:
    """The shared cache's key of the agent's live-config stamp."""
    return f"live-config:stamp:{agent_pk}"


# This process's copies of live configs: {agent pk: (the shared stamp they were read under, the config)}. A copy
# is used only while the stamp in the shared cache is the one it was read under; ``config_cache_clear`` deletes
# that stamp, so a change reaches every process at its next read.
_in_process: dict[int, tuple[str, LiveConfig]] = {}
_in_process_lock = threading.Lock()
_IN_PROCESS_MAX = 10_000


def _stamp(agent_pk: int, seen: Mapping[str, Any] | None = None) -> str | None:
    """The agent's live-config stamp in the shared cache, made when absent; None when the cache cannot be read
    (then nothing is kept in process). ``seen``: cache values the request read already (with its agent key)."""
    key = live_stamp_key(agent_pk)
    return stamp_get(key, timeout=300, seen=seen.get(key) if seen else None)


def config_get_live(*, agent: Agent, seen: Mapping[str, Any] | None = None) -> LiveConfig:
    """The agent's live config: this process's copy while the shared stamp is unchanged, else the shared cache's,
    else the database's. Every change calls ``config_cache_clear``.

    The stamp is read before the config, so a change that deletes it after this read is seen at the next one.
    The cache is an optimisation: with it unreachable the read misses and the config comes from the database
    (``loopsite.cache.DegradingRedisCache`` turns cache failures into misses and skipped writes).

    ``seen``: cache values the request has read already, earlier in it (``people.authentication.seen_with_key``):
    a stamp read there is read before the config all the same."""
    stamp = _stamp(agent.pk, seen)
    if stamp is None:
        # Unreachable: a change made meanwhile could not delete the stamp (the outbox retries it), so nothing
        # kept from before may be trusted when the cache comes back.
        _in_process.clear()
    else:
        kept = _in_process.get(agent.pk)
        if kept is not None and kept[0] == stamp:
            return kept[1]
    live = _config_read(agent)
    if stamp is not None:
        with _in_process_lock:
            keep(_in_process, agent.pk, (stamp, live), limit=_IN_PROCESS_MAX)
    return live


def _config_read(agent: Agent) -> LiveConfig:
    cached = cache.get(_cache_key(agent.pk))
    if cached is not None:
        return cached
    version = ConfigVersion.objects.get(agent=agent, is_live=True)
    shadow = _shadow_proposal(agent)
    live = LiveConfig(
        agent_pk=agent.pk,
        agent_id=agent.agent_id,
        version=version.number,
        version_pk=version.pk,
        activated_at=version.activated_at,
        thresholds={k: float(v) for k, v in version.values.items()},
        gates=dict(ThresholdDefinition.objects.filter(agent=agent).order_by().values_list("name", "action")),
        shadow={shadow.threshold_name: float(shadow.proposed_value)} if shadow is not None else None,
        shadow_proposal_id=shadow.pk if shadow is not None else None,
        canary=_canary_arm(agent),
    )
    cache.set(_cache_key(agent.pk), live, timeout=300)
    return live


def _shadow_proposal(agent: Agent) -> "Proposal | None":
    """The pending proposal whose candidate value runs in shadow: the top-ranked of the newest cycle's (a new
    cycle supersedes the last one's pending proposals). One at a time, so each decision's shadow action is
    evidence about one change. None while the agent is locked: it gets no proposals then."""
    from tuner.models import Proposal

    if agent.is_locked:
        return None
    return (
        Proposal.objects.filter(agent=agent, status=Proposal.Status.PENDING)
        .order_by("-created_at", "rank", "pk")
        .only("pk", "threshold_name", "proposed_value")
        .first()
    )


def _canary_arm(agent: Agent) -> CanaryArm | None:
    from rollouts.models import Canary

    canary = (
        Canary.objects.filter(agent=agent, state__in=Canary.SERVING)
        .select_related("version")
        .only("share", "version__number", "version__values")
    ).first()
    if canary is None:
        return None
    return CanaryArm(
        version=canary.version.number,
        version_pk=canary.version_id,
        share=float(canary.share),
        values={k: float(v) for k, v in canary.version.values.items()},
    )


def config_cache_clear(*, agent: Agent) -> None:
    """Drop the cached live config: the stamp every process's copy is checked against, and the shared copy. When
    the cache cannot be reached, the deletes go to the outbox and are retried until they land, so a cache that
    comes back does not go on serving the version this change replaced."""
    _in_process.pop(agent.pk, None)
    stamps_delete(live_stamp_key(agent.pk), _cache_key(agent.pk))


def config_versions_list(*, agent: Agent) -> list[ConfigVersion]:
    return list(ConfigVersion.objects.filter(agent=agent).select_related("approved_by", "proposal").order_by("-number"))


def threshold_definitions(*, agent: Agent) -> dict[str, ThresholdDefinition]:
    return {t.name: t for t in ThresholdDefinition.objects.filter(agent=agent)}
