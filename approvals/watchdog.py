"""The rollback watchdog (contract rule 7), run hourly and by ``run_watchdog``.

For the live version made live from a proposal, once WATCHDOG_MIN_RESPONSES responses exist under it, its error
rate p1 is compared with the baseline p0 (the previous version's rate over the 2 weeks before the change). The
change is rolled back when p1 exceeds p0 by more than WATCHDOG_TOLERANCE of p0 *and* that is significant:

    H0: p1 <= (1 + tol) * p0        H1: p1 > (1 + tol) * p0
    z = (p1 - (1 + tol) * p0) / sqrt(p1 (1 - p1) / n1 + (1 + tol)^2 p0 (1 - p0) / n0)

a one-sided two-proportion z-test with a non-inferiority margin (unpooled variance), rejected at WATCHDOG_ALPHA.
See docs/watchdog.md for why this test and what it costs.
"""

import logging
import math
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from statistics import NormalDist
from typing import Literal

from django.db import transaction

from approvals.audit import audit_record
from approvals.models import AuditEvent
from approvals.selectors import ErrorCounts, previous_version, version_error_counts, watched_versions
from loopsite.rules import rule
from thresholds.models import Agent, ConfigVersion
from thresholds.services import config_version_activate
from tuner.models import Proposal

logger = logging.getLogger(__name__)

Verdict = Literal["waiting", "no_baseline", "ok", "rollback"]


@dataclass(frozen=True)
class Assessment:
    verdict: Verdict
    new_errors: int
    new_responses: int
    base_errors: int
    base_responses: int
    new_rate: float | None
    base_rate: float | None
    limit_rate: float | None
    z: float | None
    p_value: float | None
    min_responses: int
    tolerance: float
    alpha: float

    def explain(self) -> str:
        if self.verdict == "waiting":
            return f"{self.new_responses} of {self.min_responses} responses needed under the new version"
        if self.verdict == "no_baseline":
            return "no responses under the previous version in the 2 weeks before the change"
        assert self.new_rate is not None and self.base_rate is not None and self.limit_rate is not None
        figures = (
            f"error rate {self.new_rate:.1%} ({self.new_errors}/{self.new_responses}) against baseline "
            f"{self.base_rate:.1%} ({self.base_errors}/{self.base_responses}); tolerance limit {self.limit_rate:.1%}; "
            f"z = {self.z:.2f}, one-sided p = {self.p_value:.4f}"
        )
        if self.verdict == "rollback":
            return f"{figures}: significantly above the limit at alpha {self.alpha}"
        return f"{figures}: not significantly above the limit"


def watchdog_assess(
    *, new: ErrorCounts, base: ErrorCounts, min_responses: int, tolerance: float, alpha: float
) -> Assessment:
    """Pure: the verdict for one version from its error counts and the baseline's."""

    def verdict_of(
        verdict: Verdict, limit: float | None = None, z: float | None = None, p: float | None = None
    ) -> Assessment:
        return Assessment(
            verdict=verdict,
            new_errors=new.errors,
            new_responses=new.responses,
            base_errors=base.errors,
            base_responses=base.responses,
            new_rate=new.rate,
            base_rate=base.rate,
            limit_rate=limit,
            z=z,
            p_value=p,
            min_responses=min_responses,
            tolerance=tolerance,
            alpha=alpha,
        )

    if new.responses < min_responses:
        return verdict_of("waiting")
    if base.responses == 0:
        return verdict_of("no_baseline")
    p1, p0 = new.errors / new.responses, base.errors / base.responses
    factor = 1.0 + tolerance
    limit = factor * p0
    diff = p1 - limit
    variance = p1 * (1 - p1) / new.responses + factor**2 * p0 * (1 - p0) / base.responses
    # Both rates 0 or 1 leave no sampling noise to weigh the difference against: the sign decides.
    no_noise = math.inf if diff > 0 else -math.inf if diff < 0 else 0.0
    z = diff / math.sqrt(variance) if variance > 0 else no_noise
    p_value = 1.0 - NormalDist().cdf(z) if math.isfinite(z) else (0.0 if z > 0 else 1.0)
    return verdict_of("rollback" if diff > 0 and p_value < alpha else "ok", limit, z, p_value)


def version_assess(*, version: ConfigVersion) -> tuple[Assessment, ConfigVersion | None]:
    previous = previous_version(version=version)
    new = version_error_counts(version=version)
    if previous is None:
        base = ErrorCounts(errors=0, responses=0)
    else:
        weeks = int(rule("WATCHDOG_BASELINE_WEEKS"))
        base = version_error_counts(
            version=previous, since=version.activated_at - timedelta(weeks=weeks), until=version.activated_at
        )
    assessment = watchdog_assess(
        new=new,
        base=base,
        min_responses=int(rule("WATCHDOG_MIN_RESPONSES")),
        tolerance=float(rule("WATCHDOG_TOLERANCE")),
        alpha=float(rule("WATCHDOG_ALPHA")),
    )
    return assessment, previous


def watchdog_run(*, now: datetime, agent: Agent | None = None) -> list[ConfigVersion]:
    """One pass over every watched version (of one agent when given, as a simulation on its own clock must).
    Returns the rollback versions it made live."""
    rolled: list[ConfigVersion] = []
    for version in watched_versions(agent=agent):
        assessment, previous = version_assess(version=version)
        logger.info(
            "watchdog.assessed",
            extra={"agent_id": version.agent.agent_id, "version": version.number, "verdict": assessment.verdict},
        )
        if assessment.verdict != "rollback" or previous is None:
            continue
        rollback = _rollback(version=version, previous=previous, assessment=assessment, now=now)
        if rollback is not None:
            rolled.append(rollback)
    return rolled


def _rollback(
    *, version: ConfigVersion, previous: ConfigVersion, assessment: Assessment, now: datetime
) -> ConfigVersion | None:
    """Restore ``previous``'s values unless another run got there first (then None)."""
    with transaction.atomic():
        # Lock the version; a concurrent pass that already rolled it back has made it not live, so this finds
        # nothing and stops. The conditional update on the proposal is a second guard (and SQLite's).
        locked = ConfigVersion.objects.select_for_update().filter(pk=version.pk, is_live=True).first()
        if locked is None:
            return None
        if version.proposal_id is None:
            return None
        proposal = Proposal.objects.select_related("run").get(pk=version.proposal_id)
        claimed = Proposal.objects.filter(
            pk=proposal.pk, status__in=[Proposal.Status.ACCEPTED, Proposal.Status.MODIFIED]
        ).update(status=Proposal.Status.ROLLED_BACK, rolled_back_at=now)
        if not claimed:
            return None
        proposal.refresh_from_db()
        why = assessment.explain()
        rollback = config_version_activate(
            agent=version.agent,
            values={k: float(v) for k, v in previous.values.items()},
            source=ConfigVersion.Source.ROLLBACK,
            now=now,
            reason=f"watchdog: {why}",
            rolled_back_version=locked,
        )
        name = proposal.threshold_name
        audit_record(
            kind=AuditEvent.Kind.CONFIG_ROLLED_BACK,
            agent=version.agent,
            at=now,
            actor_label="watchdog",
            threshold_name=name,
            before=locked.values,
            after=rollback.values,
            proposal=proposal,
            run=proposal.run,
            config_version=rollback,
            evidence_entry_ids=list(proposal.evidence.order_by("id").values_list("entry_id", flat=True)),
            detail={
                "fromVersion": locked.number,
                "toValuesOf": previous.number,
                "version": rollback.number,
                "assessment": {k: _finite(v) for k, v in asdict(assessment).items()},
            },
            message=why,
        )
        transaction.on_commit(lambda: _notify(rollback.pk))
    logger.warning(
        "config.rolled_back",
        extra={
            "agent_id": version.agent.agent_id,
            "version": rollback.number,
            "undid": version.number,
            "proposal_id": proposal.pk,
        },
    )
    return rollback


def _finite(value: object) -> object:
    """JSON has no infinity."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _notify(version_id: int) -> None:
    from approvals.notifications import rollback_notify

    rollback_notify(version_id=version_id)
