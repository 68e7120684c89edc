"""The rollback watchdog (contract rule 7), run hourly and by ``run_watchdog``.

Every version made live in the last WATCHDOG_WATCH_DAYS from a proposal (or by hand, other than a rollback) has a
``VersionWatch`` row and stays under watch until it is judged good or rolled back; when its window ends without
a verdict it becomes inconclusive. Each hourly pass compares, for every version still ``watching``:

- its error rate p1: the agent's responded decisions timestamped from the version's activation on (to now or
  the end of its window), less the time later versions that were rolled back were live;
- with its baseline p0: the last earlier version with WATCHDOG_BASELINE_MIN_RESPONSES responses of its own
  (decisions timestamped while it was live, within the WATCHDOG_BASELINE_WEEKS before the change), so that
  back-to-back changes are judged together against the last stable version.

Sampled weakest-action decisions weigh 1 / sample rate in both rates, and the variances use Kish's effective
sample sizes n_eff = (sum w)^2 / sum w^2. With limit = (1 + tol) * p0:

    se = sqrt(p1 (1 - p1) / n1_eff + (1 + tol)^2 p0 (1 - p0) / n0_eff),   z = (p1 - limit) / se
    rollback:  H0: p1 <= limit  rejected at WATCHDOG_ALPHA  (one-sided p = 1 - Phi(z))
    good:      H0: p1 >= limit  rejected at WATCHDOG_ALPHA  (the mirror test, p = Phi(z))

Nothing is decided before WATCHDOG_MIN_RESPONSES raw responses under the change. A rollback restores the last
version judged good after the baseline (or the baseline itself), and every watched version after it is rolled
back together. See docs/watchdog.md for why this test, what it costs, and the Monte Carlo figures.
"""

import logging
import math
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime, timedelta
from statistics import NormalDist
from typing import Any, Literal

from django.db import transaction
from django.db.models import QuerySet

from approvals.audit import audit_record
from approvals.exceptions import SelfApprovalError, WatchClosed, WatchNotFound
from approvals.guard import JUDGE, ROLL_BACK, agent_lock, approver_check, rationale_check
from approvals.models import AuditEvent, VersionWatch
from approvals.selectors import (
    ErrorCounts,
    error_counts,
    proposal_evidence_ids,
    watch_baseline,
    watch_new_intervals,
    watchable_versions,
)
from loopsite.compiled import Param, compiled
from loopsite.outbox import outbox_send
from loopsite.rules import rule
from thresholds.models import Agent, ConfigVersion
from thresholds.services import config_version_activate
from tuner.models import Proposal

logger = logging.getLogger(__name__)

Verdict = Literal["waiting", "no_baseline", "ok", "good", "rollback"]
State = VersionWatch.State
_NORMAL = NormalDist()


@dataclass(frozen=True)
class Assessment:
    """One test of one watched version. Rates are weighted; counts are raw responses."""

    verdict: Verdict
    new_errors: int
    new_responses: int
    base_errors: int
    base_responses: int
    new_rate: float | None
    base_rate: float | None
    limit_rate: float | None
    z: float | None
    p_value: float | None  # one-sided: the chance of a rate this far above the limit if it were within tolerance
    min_responses: int
    tolerance: float
    alpha: float
    p_good: float | None = None  # the mirror: the chance of a rate this far below the limit if it were not
    new_sampled: int = 0
    base_sampled: int = 0
    new_effective_n: float | None = None
    base_effective_n: float | None = None
    sample_weight: float | None = None  # what one sampled weakest-action decision counts for
    version: int | None = None
    baseline_version: int | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Assessment | None":
        """The stored figures (a watch's last assessment, an audit row's detail) back as an Assessment."""
        names = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in (data or {}).items() if k in names})
        except TypeError:
            return None

    def as_json(self) -> dict[str, Any]:
        return {k: _finite(v) for k, v in asdict(self).items()}

    def _since(self) -> str:
        return f"v{self.version}" if self.version is not None else "the change"

    def _side(self, rate: float | None, errors: int, responses: int, sampled: int, n_eff: float | None) -> str:
        text = f"{rate:.1%} ({errors}/{responses}" if rate is not None else f"— ({errors}/{responses}"
        if sampled:
            text += f", {sampled} sampled weighted, effective n {n_eff or 0:.0f}"
        return text + ")"

    def explain(self) -> str:
        """The figures on one line: for the log, the command, the rollback's reason and the audit trail."""
        if self.verdict == "waiting":
            return f"{self.new_responses} of {self.min_responses} responses needed since {self._since()} went live"
        if self.verdict == "no_baseline":
            return "no earlier version has enough responses of its own in the weeks before the change to compare with"
        assert self.limit_rate is not None
        base = f"v{self.baseline_version}'s " if self.baseline_version is not None else ""
        new = self._side(self.new_rate, self.new_errors, self.new_responses, self.new_sampled, self.new_effective_n)
        old = self._side(
            self.base_rate, self.base_errors, self.base_responses, self.base_sampled, self.base_effective_n
        )
        figures = (
            f"error rate {new} since {self._since()} against {base}baseline {old}; tolerance limit "
            f"{self.limit_rate:.1%}; z = {_num(self.z, '.2f')}, one-sided p = {_num(self.p_value, '.4f')}"
        )
        if self.verdict == "rollback":
            return f"{figures}: significantly above the limit at alpha {self.alpha}"
        if self.verdict == "good":
            return f"{figures}: significantly below the limit at alpha {self.alpha} (p = {_num(self.p_good, '.4f')})"
        return f"{figures}: neither significantly above nor below the limit yet"

    def summary(self) -> str:
        """The verdict in plain sentences, for the watch page."""
        since = self._since()
        if self.verdict == "waiting":
            return (
                f"{self.new_responses} of the {self.min_responses} reviewer responses needed have come in since "
                f"{since} went live. Nothing is judged before then."
            )
        if self.verdict == "no_baseline":
            return (
                f"No earlier version has enough responses of its own in the weeks before {since} went live, so "
                "there is nothing to compare it with. It stays under watch until its window ends, then it is "
                "inconclusive; an approver can still judge it by hand."
            )
        assert self.new_rate is not None and self.base_rate is not None and self.limit_rate is not None
        base = f"v{self.baseline_version}" if self.baseline_version is not None else "the baseline"
        weighted = (
            f" Sampled weakest-action decisions count {self.sample_weight:g} times each, as they stand for the "
            "ones nobody reviewed."
            if self.sample_weight and (self.new_sampled or self.base_sampled)
            else ""
        )
        lead = (
            f"Since {since} went live, reviewers found an error in {self.new_rate:.1%} of decisions "
            f"({self.new_errors} of {self.new_responses} responses), against {self.base_rate:.1%} under {base} "
            f"({self.base_errors} of {self.base_responses}).{weighted} The rule tolerates up to "
            f"{self.limit_rate:.1%} ({self.base_rate:.1%} plus {self.tolerance:.0%} of it)."
        )
        if self.verdict == "rollback":
            return (
                f"{lead} A rate this far above it would turn up by chance with probability "
                f"{_num(self.p_value, '.4f')} if the change were within tolerance, less than {self.alpha}: the "
                "change made things worse."
            )
        if self.verdict == "good":
            return (
                f"{lead} A rate this far below it would turn up by chance with probability "
                f"{_num(self.p_good, '.4f')} if the change were worse than tolerated, less than {self.alpha}: the "
                "change is not worse."
            )
        return (
            f"{lead} The difference is not yet significant either way (p = {_num(self.p_value, '.4f')} above, "
            f"{_num(self.p_good, '.4f')} below; {self.alpha} needed): it stays under watch as responses come in."
        )


def _sample_weight(counts: ErrorCounts) -> float | None:
    """The weight of one sampled decision, read back from the sums: sum w = (n - s) + s * w."""
    if not counts.sampled:
        return None
    return (counts.total_weight - (counts.responses - counts.sampled)) / counts.sampled


def _num(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def _finite(value: object) -> object:
    """JSON has no infinity."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def watchdog_assess(
    *, new: ErrorCounts, base: ErrorCounts, min_responses: int, tolerance: float, alpha: float
) -> Assessment:
    """Pure: the verdict for one version from its (weighted) error counts and the baseline's."""

    def verdict_of(
        verdict: Verdict,
        limit: float | None = None,
        z: float | None = None,
        p: float | None = None,
        p_good: float | None = None,
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
            p_good=p_good,
            min_responses=min_responses,
            tolerance=tolerance,
            alpha=alpha,
            new_sampled=new.sampled,
            base_sampled=base.sampled,
            new_effective_n=new.effective_n,
            base_effective_n=base.effective_n,
            sample_weight=_sample_weight(new) or _sample_weight(base),
        )

    if new.responses < min_responses:
        return verdict_of("waiting")
    p1, p0 = new.rate, base.rate
    if base.responses == 0 or p0 is None or p1 is None:
        return verdict_of("no_baseline")
    factor = 1.0 + tolerance
    limit = factor * p0
    diff = p1 - limit
    # The new side's variance is p(1 - p) at the observed rate or at the limit, whichever is larger: a run of
    # few errors among a few heavily weighted responses must not look like certainty that the change is good.
    spread = max(p1 * (1 - p1), limit * (1 - limit)) if limit <= 1 else p1 * (1 - p1)
    variance = spread / new.effective_n + factor**2 * p0 * (1 - p0) / base.effective_n
    # Both rates 0 or 1 leave no sampling noise to weigh the difference against: the sign decides.
    no_noise = math.inf if diff > 0 else -math.inf if diff < 0 else 0.0
    z = diff / math.sqrt(variance) if variance > 0 else no_noise
    if math.isfinite(z):
        p_above, p_below = 1.0 - _NORMAL.cdf(z), _NORMAL.cdf(z)
    else:
        p_above, p_below = (0.0, 1.0) if z > 0 else (1.0, 0.0)
    if diff > 0 and p_above < alpha:
        verdict: Verdict = "rollback"
    elif diff < 0 and p_below < alpha:
        verdict = "good"
    else:
        verdict = "ok"
    return verdict_of(verdict, limit, z, p_above, p_below)


# --- The watched versions ---------------------------------------------------------------------------------


def watches_ensure(*, now: datetime, agent: Agent | None = None) -> int:
    """A watch row for every watchable version made live in the last WATCHDOG_WATCH_DAYS that lacks one.

    Every path that makes a version live goes through ``config_version_activate``; rather than hook each, the
    watchdog pass (and the watch page) create the rows they miss. A version made live between two passes is
    thus watched from its activation: its data are counted by timestamp, not from the row's creation."""
    days = int(rule("WATCHDOG_WATCH_DAYS"))
    versions = _unwatched_versions(agent is not None).rows(
        since=now - timedelta(days=days), now=now, agent=agent.pk if agent is not None else None
    )
    rows = [
        VersionWatch(agent_id=agent_id, version_id=pk, watch_until=activated_at + timedelta(days=days))
        for pk, agent_id, activated_at in versions
    ]
    if rows:
        VersionWatch.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)


@compiled(ConfigVersion)
def _unwatched_versions(one_agent: bool) -> QuerySet[ConfigVersion, Any]:
    """Watchable versions made live in [``since``, ``now``] with no watch row (of ``agent`` when ``one_agent``):
    three columns, compiled once (``loopsite.compiled``), as every hourly pass asks."""
    versions = watchable_versions().filter(
        activated_at__gte=Param("since", _ACTIVATED), activated_at__lte=Param("now", _ACTIVATED), watch__isnull=True
    )
    if one_agent:
        versions = versions.filter(agent_id=Param("agent", _VERSION_AGENT))
    return versions.order_by().values_list("pk", "agent_id", "activated_at")


_ACTIVATED = ConfigVersion._meta.get_field("activated_at")
_VERSION_AGENT = ConfigVersion._meta.get_field("agent")
_WATCH_AGENT = VersionWatch._meta.get_field("agent")


def _restored_numbers(rollbacks: list[ConfigVersion]) -> dict[int, int]:
    """The version whose values each rollback restored, from its audit row (``toVersion``; ``toValuesOf`` in
    the watchdog's older rows), else the version before the one it undid."""
    found: dict[int, int] = {}
    events = AuditEvent.objects.filter(
        config_version__in=rollbacks, kind__in=[AuditEvent.Kind.CONFIG_ROLLED_BACK, AuditEvent.Kind.CONFIG_MANUAL]
    ).values_list("config_version_id", "detail")
    for version_id, detail in events:
        target = (detail or {}).get("toVersion", (detail or {}).get("toValuesOf"))
        if isinstance(target, int) and version_id is not None:
            found[version_id] = target
    for r in rollbacks:
        if r.pk not in found and r.rolled_back_version is not None:
            found[r.pk] = r.rolled_back_version.number - 1
    return found


def rollback_target(rollback: ConfigVersion) -> int | None:
    """The version whose values a rollback restored."""
    return _restored_numbers([rollback]).get(rollback.pk)


@dataclass(frozen=True)
class OpenWatch:
    """A watch not rolled back, as the reconciliation reads it: the few columns it needs, read every pass."""

    pk: int
    state: str
    number: int
    proposal_id: int | None


def _open_watches(agent: Agent) -> list[OpenWatch]:
    """The agent's watches not rolled back, with their versions' numbers."""
    return [OpenWatch(*row) for row in _open_watch_rows().rows(agent=agent.pk)]


@compiled(VersionWatch)
def _open_watch_rows() -> QuerySet[VersionWatch, Any]:
    return (
        VersionWatch.objects.filter(agent_id=Param("agent", _WATCH_AGENT))
        .exclude(state=State.ROLLED_BACK)
        .order_by()
        .values_list("pk", "state", "version__number", "version__proposal_id")
    )


def watches_reconcile(*, agent: Agent, now: datetime, open_rows: list[OpenWatch] | None = None) -> int:
    """Watches undone by a rollback made elsewhere (the config versions page, ``rollback_config``) become
    ``rolled_back``, with their proposals. Returns how many. ``open_rows``: the agent's watches not rolled back,
    when the caller has just read them."""
    if open_rows is None:
        open_rows = _open_watches(agent)
    if not open_rows:
        return 0
    first = min(w.number for w in open_rows)
    # Every pass asks; most find nothing. The rollbacks that could undo an open watch are picked from three
    # columns first, and only those are read whole (with their audit rows, for the version each restored).
    later = _later_rollbacks().rows(agent=agent.pk, first=first, now=now)
    candidates = [
        pk for pk, number, undone in later if any(number > w.number and undone >= w.number for w in open_rows)
    ]
    if not candidates:
        return 0
    rollbacks = list(
        ConfigVersion.objects.filter(pk__in=candidates)
        .select_related("rolled_back_version", "approved_by")
        .order_by("number")
    )
    restored = _restored_numbers(rollbacks)
    changed = 0
    for watch in open_rows:
        n = watch.number
        undoing = next(
            (
                r
                for r in rollbacks
                if r.number > n
                and r.rolled_back_version is not None
                and r.rolled_back_version.number >= n
                and restored.get(r.pk, n) < n
            ),
            None,
        )
        if undoing is None:
            continue
        with transaction.atomic():
            done = (
                VersionWatch.objects.filter(pk=watch.pk)
                .exclude(state=State.ROLLED_BACK)
                .update(
                    state=State.ROLLED_BACK,
                    judged_at=undoing.activated_at,
                    judged_by=undoing.approved_by,
                    judged_label=undoing.approved_by.get_username() if undoing.approved_by else "by hand",
                    rationale=f"undone by v{undoing.number} ({undoing.source}): {undoing.reason}"[:4000],
                    rolled_back_by=undoing,
                )
            )
            if done and watch.proposal_id is not None:
                Proposal.objects.filter(
                    pk=watch.proposal_id, status__in=[Proposal.Status.ACCEPTED, Proposal.Status.MODIFIED]
                ).update(status=Proposal.Status.ROLLED_BACK, rolled_back_at=undoing.activated_at)
        changed += done
    return changed


@compiled(ConfigVersion)
def _later_rollbacks() -> QuerySet[ConfigVersion, Any]:
    """The agent's rollbacks live by ``now`` numbered after ``first``: three columns, compiled once."""
    return (
        ConfigVersion.objects.filter(
            agent_id=Param("agent", _VERSION_AGENT),
            number__gt=Param("first", ConfigVersion._meta.get_field("number")),
            rolled_back_version__isnull=False,
            activated_at__lte=Param("now", _ACTIVATED),
        )
        .order_by()
        .values_list("pk", "number", "rolled_back_version__number")
    )


def watch_get(*, agent: Agent, number: int, now: datetime) -> VersionWatch:
    """The watch of an agent's version ``number``, made now if the version is watchable, recent and lacks one."""
    watches_ensure(now=now, agent=agent)
    watches_reconcile(agent=agent, now=now)
    watch = (
        VersionWatch.objects.filter(agent=agent, version__number=number)
        .select_related("agent", "version", "version__agent", "version__proposal", "baseline", "judged_by")
        .first()
    )
    if watch is None:
        raise WatchNotFound(
            f"{agent.agent_id} v{number} is not under watch: only versions made live from a proposal (or changed "
            f"by hand) in the last {rule('WATCHDOG_WATCH_DAYS')} days are",
            field="version",
        )
    return watch


def watch_assess(*, watch: VersionWatch, now: datetime) -> tuple[Assessment, ConfigVersion | None]:
    """Test one watched version now. Returns the assessment and the baseline version it used."""
    version = watch.version
    baseline, base = watch_baseline(version=version)
    until = min(now, watch.watch_until)
    new = error_counts(agent=watch.agent, intervals=watch_new_intervals(version=version, until=until))
    assessment = watchdog_assess(
        new=new,
        base=base,
        min_responses=int(rule("WATCHDOG_MIN_RESPONSES")),
        tolerance=float(rule("WATCHDOG_TOLERANCE")),
        alpha=float(rule("WATCHDOG_ALPHA")),
    )
    assessment = replace(
        assessment, version=version.number, baseline_version=baseline.number if baseline is not None else None
    )
    return assessment, baseline


# --- The pass -----------------------------------------------------------------------------------------------


@dataclass
class Watched:
    """What one pass did with one watched version."""

    watch: VersionWatch
    assessment: Assessment
    outcome: str  # watching, good, inconclusive, rolled_back
    rollback: ConfigVersion | None = None


def watchdog_pass(*, now: datetime, agent: Agent | None = None) -> list[Watched]:
    """One pass over every watched version (of one agent when given, as a simulation on its own clock must)."""
    watches_ensure(now=now, agent=agent)
    if agent is not None:
        # One agent (a simulation's hourly pass): its open watches are read once, for the reconciliation and to
        # see whether any is still watched; the pass itself runs only then.
        rows = _open_watches(agent)
        watches_reconcile(agent=agent, now=now, open_rows=rows)
        # Reconciliation only ever closes watches: none watching in ``rows`` leaves this pass nothing to test (a
        # watch made meanwhile, by the watch page, is tested by the next pass).
        return _agent_pass(agent=agent, now=now) if any(w.state == State.WATCHING for w in rows) else []
    open_rows = VersionWatch.objects.exclude(state=State.ROLLED_BACK)
    agent_pks = sorted(set(open_rows.order_by().values_list("agent_id", flat=True)))
    results: list[Watched] = []
    for pk in agent_pks:
        one = Agent.objects.get(pk=pk)
        watches_reconcile(agent=one, now=now)
        results.extend(_agent_pass(agent=one, now=now))
    return results


def watchdog_run(*, now: datetime, agent: Agent | None = None) -> list[ConfigVersion]:
    """One pass; returns the rollback versions it made live."""
    return [w.rollback for w in watchdog_pass(now=now, agent=agent) if w.rollback is not None]


def _agent_pass(*, agent: Agent, now: datetime) -> list[Watched]:
    results: list[Watched] = []
    watching = (
        VersionWatch.objects.filter(agent=agent, state=State.WATCHING)
        .select_related("agent", "version", "version__agent", "version__proposal")
        .order_by("version__number")
    )
    # Oldest first: when an earlier change is already worse, its rollback takes every later one with it.
    for watch in watching:
        assessment, baseline = watch_assess(watch=watch, now=now)
        VersionWatch.objects.filter(pk=watch.pk, state=State.WATCHING).update(
            assessment=assessment.as_json(), assessed_at=now, baseline=baseline
        )
        logger.info(
            "watchdog.assessed",
            extra={"agent_id": agent.agent_id, "version": watch.version.number, "verdict": assessment.verdict},
        )
        if assessment.verdict == "rollback":
            rollback = _rollback(watch=watch, baseline=baseline, assessment=assessment, now=now)
            results.append(Watched(watch, assessment, "rolled_back" if rollback else "watching", rollback))
            break
        if assessment.verdict == "good":
            outcome = _judge(watch=watch, state=State.GOOD, assessment=assessment, now=now)
        elif now >= watch.watch_until:
            outcome = _judge(watch=watch, state=State.INCONCLUSIVE, assessment=assessment, now=now)
        else:
            outcome = State.WATCHING
        results.append(Watched(watch, assessment, str(outcome)))
    return results


def _change_of(version: ConfigVersion) -> tuple[str, Proposal | None]:
    proposal = version.proposal
    return (proposal.threshold_name if proposal is not None else ""), proposal


def _judge(*, watch: VersionWatch, state: str, assessment: Assessment, now: datetime) -> str:
    """The watchdog's own verdict: good (the mirror test) or inconclusive (the window ended), audited."""
    with transaction.atomic():
        agent_lock(watch.agent)
        done = VersionWatch.objects.filter(pk=watch.pk, state=State.WATCHING).update(
            state=state, judged_at=now, judged_label="watchdog", assessment=assessment.as_json(), assessed_at=now
        )
        if not done:
            return str(VersionWatch.objects.get(pk=watch.pk).state)
        name, proposal = _change_of(watch.version)
        audit_record(
            kind=AuditEvent.Kind.WATCH_GOOD if state == State.GOOD else AuditEvent.Kind.WATCH_INCONCLUSIVE,
            agent=watch.agent,
            at=now,
            actor_label="watchdog",
            threshold_name=name,
            proposal=proposal,
            run=proposal.run if proposal is not None else None,
            config_version=watch.version,
            detail={"version": watch.version.number, "state": state, "assessment": assessment.as_json()},
            message=assessment.explain()
            if state == State.GOOD
            else f"watch window ended without a verdict: {assessment.explain()}",
        )
    logger.info(
        "watch.judged", extra={"agent_id": watch.agent.agent_id, "version": watch.version.number, "state": state}
    )
    return state


def _restore_target(*, version: ConfigVersion, baseline: ConfigVersion | None) -> ConfigVersion | None:
    """The last version judged good after the baseline, else the baseline; with no baseline (a rollback by
    hand), the last earlier version not rolled back."""
    earlier = ConfigVersion.objects.filter(agent=version.agent, number__lt=version.number).exclude(
        source=ConfigVersion.Source.CANARY  # never live for every session: nothing to restore
    )
    floor = baseline.number if baseline is not None else 0
    good = earlier.filter(number__gt=floor, watch__state=State.GOOD).order_by("-number").first()
    if good is not None:
        return good
    if baseline is not None:
        return baseline
    return earlier.exclude(watch__state=State.ROLLED_BACK).order_by("-number").first()


def _rollback(
    *,
    watch: VersionWatch,
    baseline: ConfigVersion | None,
    assessment: Assessment,
    now: datetime,
    actor: Any = None,
    rationale: str = "",
) -> ConfigVersion | None:
    """Restore the last good version before ``watch``'s change (or its baseline) as a new live version; every
    watched version after it is rolled back with it. None when another pass or person got there first.

    The agent row is locked first (as every change of an agent's config does), then the watch is claimed with a
    conditional update: of two overlapping passes exactly one rolls back. Allowed while the agent is locked."""
    by_hand = actor is not None
    label = getattr(actor, "username", "") if by_hand else "watchdog"
    with transaction.atomic():
        agent = agent_lock(watch.agent)
        if by_hand:
            approver_check(actor, ROLL_BACK, agent=agent)
        locked = (
            VersionWatch.objects.select_for_update(of=("self",))
            .select_related("version", "version__agent", "version__proposal", "version__proposal__run")
            .filter(pk=watch.pk)
            .first()
        )
        if locked is None or locked.state == State.ROLLED_BACK:
            return None
        if not by_hand and locked.state != State.WATCHING:
            return None
        target = _restore_target(version=locked.version, baseline=baseline)
        if target is None:
            return None
        live = ConfigVersion.objects.select_for_update().get(agent=agent, is_live=True)
        undone = list(
            VersionWatch.objects.filter(agent=agent, version__number__gt=target.number)
            .exclude(state=State.ROLLED_BACK)
            .select_related("version")
            .order_by("version__number")
        )
        numbers = [w.version.number for w in undone]
        values = {k: float(v) for k, v in target.values.items()}
        why = assessment.explain()
        together = f" Rolled back v{', v'.join(map(str, numbers))} to the values of v{target.number}."
        rollback = config_version_activate(
            agent=agent,
            values=values,
            source=ConfigVersion.Source.ROLLBACK,
            now=now,
            reason=(
                f"rolled back v{locked.version.number} by hand by {label}: {rationale}. {why}.{together}"
                if by_hand
                else f"watchdog: {why}.{together}"
            ),
            approved_by=actor if by_hand else None,
            rolled_back_version=live,
        )
        VersionWatch.objects.filter(pk__in=[w.pk for w in undone]).update(
            state=State.ROLLED_BACK,
            judged_at=now,
            judged_by=actor if by_hand else None,
            judged_label=label,
            rationale=rationale,
            rolled_back_by=rollback,
        )
        VersionWatch.objects.filter(pk=locked.pk).update(
            assessment=assessment.as_json(), assessed_at=now, baseline=baseline
        )
        proposal_ids = list(
            ConfigVersion.objects.filter(
                agent=agent, number__gt=target.number, number__lte=live.number, proposal__isnull=False
            ).values_list("proposal_id", flat=True)
        )
        Proposal.objects.filter(
            pk__in=proposal_ids, status__in=[Proposal.Status.ACCEPTED, Proposal.Status.MODIFIED]
        ).update(status=Proposal.Status.ROLLED_BACK, rolled_back_at=now)
        name, proposal = _change_of(locked.version)
        if proposal is not None:
            proposal.refresh_from_db()
        changed = sorted(k for k in set(values) | set(live.values) if values.get(k) != live.values.get(k))
        figures = assessment.as_json()
        detail = {
            "fromVersion": live.number,
            "toVersion": target.number,
            "toValuesOf": target.number,
            "version": rollback.number,
            "watchedVersion": locked.version.number,
            "baselineVersion": baseline.number if baseline is not None else None,
            "undoneVersions": numbers,
            "changed": changed,
            "manual": by_hand,
            "assessment": figures,
        }
        audit_record(
            kind=AuditEvent.Kind.CONFIG_ROLLED_BACK,
            agent=agent,
            at=now,
            actor=actor if by_hand else None,
            actor_label=label,
            threshold_name=changed[0] if len(changed) == 1 else "",
            before=live.values,
            after=rollback.values,
            proposal=proposal,
            run=proposal.run if proposal is not None else None,
            config_version=rollback,
            evidence_entry_ids=(proposal_evidence_ids(proposal) if proposal else []),
            detail=detail,
            message=f"{rationale} ({why}){together}" if by_hand else f"{why}.{together}",
        )
        if by_hand:
            audit_record(
                kind=AuditEvent.Kind.WATCH_ROLLED_BACK,
                agent=agent,
                at=now,
                actor=actor,
                threshold_name=name,
                before=live.values,
                after=rollback.values,
                proposal=proposal,
                run=proposal.run if proposal is not None else None,
                config_version=locked.version,
                detail={**detail, "state": State.ROLLED_BACK},
                message=rationale,
            )
        rollback_pk = rollback.pk
        outbox_send("notify.rollback", version_id=rollback_pk)  # after commit; retried if mail is down
    logger.warning(
        "config.rolled_back",
        extra={
            "agent_id": agent.agent_id,
            "version": rollback.number,
            "undid": numbers,
            "restored": target.number,
            "by": label,
        },
    )
    return rollback


# --- By hand: an approver judges a watched change -----------------------------------------------------------


def change_author_id(version: ConfigVersion) -> int | None:
    """Who made a watched change: the proposal's author for a hand-made proposal, the approver of a manual one."""
    if version.proposal is not None:
        return version.proposal.created_by_id
    if version.source == ConfigVersion.Source.MANUAL:
        return version.approved_by_id
    return None


def watch_mark_good(*, watch: VersionWatch, actor: Any, rationale: str, now: datetime) -> VersionWatch:
    """An approver judges a watched (or inconclusive) change good: the watchdog stops watching it."""
    text = rationale_check(rationale)
    with transaction.atomic():
        agent = agent_lock(watch.agent)
        approver_check(actor, JUDGE, agent=agent)
        if change_author_id(watch.version) == getattr(actor, "pk", None):
            raise SelfApprovalError("you made this change; another approver must judge it")
        current = VersionWatch.objects.select_related("agent", "version", "version__agent", "version__proposal").get(
            pk=watch.pk
        )
        if current.state not in (State.WATCHING, State.INCONCLUSIVE):
            raise WatchClosed(f"v{current.version.number} is {current.state.replace('_', ' ')} already")
        assessment, baseline = watch_assess(watch=current, now=now)
        VersionWatch.objects.filter(pk=current.pk).update(
            state=State.GOOD,
            judged_at=now,
            judged_by=actor,
            judged_label=actor.username,
            rationale=text,
            assessment=assessment.as_json(),
            assessed_at=now,
            baseline=baseline,
        )
        name, proposal = _change_of(current.version)
        audit_record(
            kind=AuditEvent.Kind.WATCH_MARKED_GOOD,
            agent=agent,
            at=now,
            actor=actor,
            threshold_name=name,
            proposal=proposal,
            run=proposal.run if proposal is not None else None,
            config_version=current.version,
            detail={
                "version": current.version.number,
                "before": current.state,
                "state": State.GOOD,
                "assessment": assessment.as_json(),
            },
            message=text,
        )
    logger.info("watch.marked_good", extra={"agent_id": agent.agent_id, "version": current.version.number})
    current.refresh_from_db()
    return current


def watch_rollback(*, watch: VersionWatch, actor: Any, rationale: str, now: datetime) -> ConfigVersion:
    """An approver rolls a watched change back by hand, through the watchdog's own rollback."""
    text = rationale_check(rationale)
    current = VersionWatch.objects.select_related("agent", "version", "version__agent", "version__proposal").get(
        pk=watch.pk
    )
    if current.state == State.ROLLED_BACK:
        raise WatchClosed(f"v{current.version.number} is rolled back already")
    assessment, baseline = watch_assess(watch=current, now=now)
    rollback = _rollback(watch=current, baseline=baseline, assessment=assessment, now=now, actor=actor, rationale=text)
    if rollback is None:
        raise WatchClosed(f"v{current.version.number} was rolled back by someone else meanwhile")
    return rollback
