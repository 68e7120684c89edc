"""Running and storing a tuner cycle.

``tuner_cycle_run`` claims the (agent, cycle) run under its unique constraint with a conditional status update,
computes (writing nothing; on PostgreSQL its reads of the window in one transaction of their own, with the tuner's
work_mem and jit: ``tuner.selectors.window_reads``), then stores everything a cycle produces in one transaction:
its output, clusters, proposals with their evidence, audit rows, rejection memories, superseded proposals. While it
computes, the worker writes the run's heartbeat (``tuner.heartbeat``). A worker killed mid-run leaves a 'running'
row and nothing else; once its heartbeat is three beats old, the next delivery, ``run_tuner`` or request takes it
over and completes it.
"""

import logging
import math
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from approvals.audit import audit_record
from loopsite.outbox import outbox_send
from loopsite.replica import lagging_reads
from loopsite.rules import rule, rules
from thresholds.models import Agent, ThresholdDefinition
from thresholds.selectors import config_get_live, threshold_definitions
from tuner import selectors
from tuner.analysis import (
    Candidate,
    CycleFacts,
    Objective,
    Reference,
    ReplayData,
    RulesOutcome,
    cluster_by_features,
    cluster_by_rules,
    distinguishing_features,
    grid_index,
    in_baseline,
    real_cases,
    real_misses,
    rules_apply,
    standardise,
    threshold_creep,
)
from tuner.beside import read_beside
from tuner.clusters import band_thresholds, clusters_addressed
from tuner.generators import Generated, GenerationContext, Generator, StatisticalGenerator, default_generator
from tuner.heartbeat import Heartbeat, stale_runs
from tuner.models import Cluster, MissReference, Proposal, ProposalEvidence, RejectionMemory, TunerRun

logger = logging.getLogger(__name__)

CLUSTER_SAMPLE = 2000
MAX_FEATURES = 30
EVIDENCE_GROWTH_TO_LIFT = 1.5


# ------------------------------------------------------------------------------------------------ claiming


def _claim(*, agent: Agent, window: selectors.Window, now: datetime, requested_by: Any) -> tuple[TunerRun, bool]:
    """The run for this cycle, and whether this caller won the right to compute it."""
    run = TunerRun.objects.filter(agent=agent, cycle=window.cycle).first()
    if run is None:
        try:
            with transaction.atomic():
                run = TunerRun.objects.create(
                    agent=agent,
                    cycle=window.cycle,
                    status=TunerRun.Status.PENDING,
                    window_start=window.start,
                    window_end=window.end,
                    requested_by=requested_by if getattr(requested_by, "pk", None) else None,
                    created_at=now,
                )
        except IntegrityError:
            run = TunerRun.objects.get(agent=agent, cycle=window.cycle)
    if run.status == TunerRun.Status.DONE:
        return run, False
    wall = timezone.now()
    # A running run is claimable once its worker has stopped heartbeating (tuner.heartbeat).
    claimable = Q(status__in=[TunerRun.Status.PENDING, TunerRun.Status.FAILED]) | stale_runs(wall)
    won = TunerRun.objects.filter(claimable, pk=run.pk).update(
        status=TunerRun.Status.RUNNING,
        started_at=wall,
        heartbeat_at=wall,
        window_start=window.start,
        window_end=window.end,
    )
    if won and run.status == TunerRun.Status.RUNNING:
        logger.warning(
            "tuner.run_taken_over",
            extra={"agent_id": agent.agent_id, "run_id": run.pk, "last_heartbeat": str(run.heartbeat_at)},
        )
    run.refresh_from_db()
    return run, bool(won)


# ------------------------------------------------------------------------------------------------ phase 2


def clusters_find(
    *, agent: Agent, window: selectors.Window, samples: dict[str, selectors.ClusterRows] | None = None
) -> list[dict[str, Any]]:
    """Dismissals and escalations clustered by feature similarity (by matched-rule combination for a
    rule-based agent), each described against the approved decisions. ``samples``: the window's cluster samples
    when already read (``selectors.cluster_samples``)."""
    if samples is None:
        samples = selectors.cluster_samples(agent=agent, window=window, limit=CLUSTER_SAMPLE)
    approvals = samples["approve"]
    out: list[dict[str, Any]] = []
    for kind, min_size, similarity in (
        ("dismiss", rule("DISMISS_CLUSTER_MIN_SIZE"), rule("DISMISS_CLUSTER_SIMILARITY")),
        ("escalate", rule("ESCALATE_CLUSTER_MIN_SIZE"), rule("ESCALATE_CLUSTER_SIMILARITY")),
    ):
        rows = samples[kind]
        if not rows.entry_ids:
            continue
        counter: Counter[str] = Counter()
        for feats in rows.features:
            counter.update(k for k, v in feats.items() if isinstance(v, int | float))
        names = [n for n, _ in counter.most_common(MAX_FEATURES)]
        with_conf = [{**f, "confidence": c} for f, c in zip(rows.features, rows.confidences, strict=True)]
        ref = [{**f, "confidence": c} for f, c in zip(approvals.features, approvals.confidences, strict=True)]
        matrix, _, _ = standardise(with_conf, ref, [*names, "confidence"])
        groups: list[tuple[list[str], list[int]]]
        if agent.rule_based:
            groups = [(list(combo), members) for combo, members in cluster_by_rules(rows.rules, min_size=min_size)]
        else:
            groups = [([], c.members) for c in cluster_by_features(matrix, min_size=min_size, similarity=similarity)]
        scale = rows.total / len(rows.entry_ids)
        for combo, members in groups:
            # A rule-based decision may carry no confidence: a cluster of such spans the whole range.
            confs = [c for c in (rows.confidences[i] for i in members) if c is not None] or [0.0, 1.0]
            features = distinguishing_features(matrix[members], [*names, "confidence"])
            label = (
                " + ".join(combo)
                if combo
                else ", ".join(f"{f['feature']} {'high' if f['effect'] > 0 else 'low'}" for f in features)
            )
            out.append(
                {
                    "kind": kind,
                    "label": (label or f"{kind} cluster")[:300],
                    "size": int(round(len(members) * scale)),
                    "share": round(len(members) / len(rows.entry_ids), 4),
                    "thresholds": sorted({rows.thresholds[i] for i in members}),
                    "confidenceRange": [round(min(confs), 4), round(max(confs), 4)],
                    "distinguishingFeatures": features,
                    "rules": combo,
                    "sampleEntryIds": [rows.entry_ids[i] for i in members[:10]],
                }
            )
    return out


def proposal_clusters(
    *,
    agent: Agent,
    clusters: list[dict[str, Any]],
    threshold_name: str,
    direction: str,
    current: float,
    proposed: float,
) -> list[dict[str, Any]]:
    """The clusters a proposal addresses (those whose members fall in the band its move affects; tuner.clusters)."""
    gates = {d.name: d.action for d in threshold_definitions(agent=agent).values()}
    thresholds = band_thresholds(
        threshold_name=threshold_name,
        direction=direction,
        gates=gates,
        values=config_get_live(agent=agent).thresholds,
        actions=list(agent.actions),
    )
    return clusters_addressed(clusters, direction=direction, current=current, proposed=proposed, thresholds=thresholds)


# ------------------------------------------------------------------------------------------------ memory


@dataclass
class MemoryPlan:
    active: list[RejectionMemory]
    new: list[RejectionMemory]
    lifted: list[RejectionMemory]


def rejection_memories(*, agent: Agent, now: datetime) -> MemoryPlan:
    """Active constraints, plus new ones for each (threshold, direction) whose last N decided proposals were
    all rejected after any earlier constraint for that kind was lifted."""
    n = rule("REJECTIONS_BEFORE_MEMORY")
    active = list(RejectionMemory.objects.filter(agent=agent, lifted_at__isnull=True))
    have = {(m.threshold_name, m.direction) for m in active}
    decided = Proposal.objects.filter(agent=agent, decided_at__isnull=False).exclude(
        status__in=[Proposal.Status.SUPERSEDED, Proposal.Status.EXPIRED, Proposal.Status.PENDING]
    )
    new: list[RejectionMemory] = []
    for name, direction in decided.order_by().values_list("threshold_name", "direction").distinct():
        if (name, direction) in have:
            continue
        last = list(decided.filter(threshold_name=name, direction=direction).order_by("-decided_at", "-pk")[:n])
        if len(last) < n or any(p.status != Proposal.Status.REJECTED for p in last):
            continue
        lifted = (
            RejectionMemory.objects.filter(agent=agent, threshold_name=name, direction=direction)
            .exclude(lifted_at__isnull=True)
            .order_by("-lifted_at")
            .first()
        )
        oldest = last[-1].decided_at
        if lifted is not None and lifted.lifted_at is not None and oldest is not None and oldest <= lifted.lifted_at:
            continue  # these rejections already made a constraint that has been lifted
        new.append(
            RejectionMemory(
                agent=agent,
                threshold_name=name,
                direction=direction,
                rationales=[p.rationale for p in reversed(last)],
                evidence_at_rejection=max(p.evidence_count for p in last),
                created_at=now,
            )
        )
    return MemoryPlan(active=active + new, new=new, lifted=[])


def _apply_memories(
    candidates: list[Candidate], plan: MemoryPlan, *, now: datetime, notes: list[str]
) -> list[Candidate]:
    """A remembered kind of proposal stays suppressed until its evidence has grown."""
    by_kind = {(m.threshold_name, m.direction): m for m in plan.active}
    kept = []
    for c in candidates:
        memory = by_kind.get((c.threshold_name, c.direction))
        if memory is None:
            kept.append(c)
            continue
        needed = math.ceil(memory.evidence_at_rejection * EVIDENCE_GROWTH_TO_LIFT)
        if c.evidence_count >= needed:
            memory.lifted_at = now
            plan.lifted.append(memory)
            notes.append(
                f"rejection memory for {c.threshold_name} {c.direction} lifted: evidence grew from "
                f"{memory.evidence_at_rejection} to {c.evidence_count}"
            )
            kept.append(c)
        else:
            notes.append(
                f"suppressed {c.threshold_name} {c.direction}: rejected {len(memory.rationales)} times in a row "
                f"({'; '.join(memory.rationales)[:300]}); evidence {c.evidence_count} has not grown to {needed}"
            )
    return kept


# ------------------------------------------------------------------------------------------------ guard and lock


def allowed_ranges(
    *, agent: Agent, now: datetime, definitions: dict[str, ThresholdDefinition]
) -> tuple[dict[str, tuple[float, float]], int]:
    """The values each threshold may take this cycle and how many more changes from proposals may go live:
    ``approvals.guard.allowances`` (rule 3: within 20 % of each value at the cycle's start, and its bounds),
    reading the cycle's state once."""
    from approvals.guard import allowances, changes_left

    found = allowances(agent=agent, now=now, definitions=definitions.values())
    ranges = {name: (a.low, a.high) for name, a in sorted(found.items())}
    left = next(iter(found.values())).changes_left if found else changes_left(agent=agent, now=now)
    return ranges, int(left)


def lock_sentence(agent: Agent) -> str:
    """What the summary says about a locked config (contract rule 11): by whom, when and why; '' when unlocked."""
    if not agent.is_locked or agent.locked_at is None:
        return ""
    who = getattr(agent.locked_by, "username", "") or "an unknown user"
    why = agent.lock_rationale.strip() or "no rationale given"
    return (
        f"The config is locked: {who} locked it on {agent.locked_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC "
        f"(\u201c{why}\u201d). The tuner "
        "reports but proposes nothing while it is locked; only a rollback changes it."
    )


# ------------------------------------------------------------------------------------------------ the reference


def reference_figures(data: ReplayData, value: float, *, cap: float) -> dict[str, Any]:
    """One threshold's real misses (noise-corrected escalations and confirmed cases below ``value``) and real
    cases in a period, and their ratio."""
    excess, floors = real_cases(data.negatives, data.positives, data.weights, data.gated, cap=cap)
    misses = real_misses(excess, grid_index(value))
    real = real_misses(excess, excess.shape[1])
    return {
        "value": value,
        "misses": round(misses, 3),
        "realCases": round(real, 3),
        "rate": round(misses / real, 6) if real > 0 else 0.0,
        "floors": [round(floors[0], 4), round(floors[1], 4)],
    }


@dataclass
class References:
    by_threshold: dict[str, Reference]
    to_save: MissReference | None  # a reference made or (re)measured by this cycle
    label: str


def miss_references(
    *, agent: Agent, window: selectors.Window, now: datetime, replay: dict[str, ReplayData], live: dict[str, float]
) -> References:
    """Each threshold's reference for the miss budget (contract rule 10). It is the agent's ``MissReference``:
    the period an engineer set, else the weeks (the agent's window) before the first accepted change, made here
    the first time such a change exists; measured once and kept. Before any change, the window itself stands in
    (provisional), so the budget is then the per-cycle rule."""
    cap = rule("NOISE_FLOOR_MAX")
    stored = selectors.miss_reference_get(agent=agent)
    if stored is None:
        change = selectors.first_change(agent=agent, before=now)
        if change is None:
            label = f"{window.start:%Y-%m-%d}..{window.end:%Y-%m-%d} (this window: no change accepted yet)"
            refs = {}
            for name, data in replay.items():
                if name in live:
                    f = reference_figures(data, live[name], cap=cap)
                    refs[name] = Reference(f["rate"], f["misses"], f["realCases"], label, provisional=True)
            return References(refs, None, label)
        stored = MissReference(
            agent=agent,
            period_start=change.activated_at - timedelta(weeks=agent.window_weeks or rule("DEFAULT_WINDOW_WEEKS")),
            period_end=change.activated_at,
            note=f"the weeks before the first accepted change (config v{change.number})",
        )
    to_save = None
    if not stored.measured:
        period = selectors.Window(cycle=window.cycle, start=stored.period_start, end=stored.period_end)
        period_definitions = threshold_definitions(agent=agent)
        histograms = selectors.threshold_histograms(agent=agent, window=period, definitions=period_definitions)
        values = selectors.values_at(agent=agent, at=stored.period_end)
        figures = {}
        for name, definition in period_definitions.items():
            if name not in histograms.by_threshold:
                continue
            period_data = selectors.replay_data(
                agent=agent, definition=definition, histograms=histograms.by_threshold[name]
            )
            if period_data is not None and name in values:
                figures[name] = reference_figures(period_data, values[name], cap=cap)
        stored.figures = figures
        stored.measured_start, stored.measured_end, stored.measured_at = stored.period_start, stored.period_end, now
        to_save = stored
    spent = selectors.miss_ledger(agent=agent, since=stored.period_end, until=now)
    refs = {
        name: Reference(
            float(f["rate"]), float(f["misses"]), float(f["realCases"]), stored.label, spent=spent.get(name, 0.0)
        )
        for name, f in stored.figures.items()
    }
    return References(refs, to_save, stored.label)


# ------------------------------------------------------------------------------------------------ the cycle


def _replay_notes(
    *, agent: Agent, definitions: dict[str, Any], replay: dict[str, ReplayData], unscored: dict[str, int]
) -> list[str]:
    """What the replay could not use: decisions with no score, and a rule-based agent's rules with no hit of their
    own in the window (nothing to judge them on, so nothing is proposed for them)."""
    notes: list[str] = []
    for name, n in sorted(unscored.items()):
        definition = definitions[name]
        feature = definition.score_feature if agent.rule_based else ""
        what = f"feature {feature!r}" if feature else "confidence"
        notes.append(
            f"{name}: {n} responded decision(s) of its populations carry no {what}, so the replay leaves them out"
        )
    if agent.rule_based:
        for name, data in sorted(replay.items()):
            if not (data.negatives[data.gated].sum() + data.positives[data.gated].sum()):
                notes.append(
                    f"{name}: no responded decision at {definitions[name].action} in the window was fired by its "
                    f"rule {definitions[name].rule_name!r} alone, so it has no evidence of its own"
                )
    return notes


@dataclass
class CycleResult:
    outcome: RulesOutcome
    generated: Generated
    clusters: list[dict[str, Any]]
    stats: dict[str, Any]
    notes: list[str]
    plan: MemoryPlan
    reference: MissReference | None = None  # a miss reference this cycle made or measured, to store


def cycle_compute(
    *, agent: Agent, window: selectors.Window, now: datetime, since: datetime, generator: Generator
) -> CycleResult:
    """Phases 1-3 and the rules; reads only."""
    the_rules = rules()
    definitions = threshold_definitions(agent=agent)
    live = config_get_live(agent=agent).thresholds
    # The window's rows, weeks of them, may come from the replica, seconds behind; what decides what may change
    # (the live config and its cache, rollbacks, rejections, the guard's ranges) is read from the primary.
    # One aggregate pass over the window (counts, trends, histograms and evidence bins) and one query for the
    # cluster samples, in one transaction with the tuner's work_mem and jit (selectors.window_reads). The samples
    # are read on a second connection in the same snapshot while this one goes on (tuner.beside).
    with selectors.window_reads() as alias:
        scan = selectors.window_scan(agent=agent, window=window, definitions=definitions)
        window = scan.window  # carries the scan: evidence is counted from it, not by another pass
        samples = read_beside(
            alias,
            lambda: selectors.cluster_samples(agent=agent, window=scan.window, limit=CLUSTER_SAMPLE),
            settings_sql=selectors.TUNER_SETTINGS_SQL,
        )
    # A generator that does not read the clusters (the statistical one) runs while the samples are read.
    clusters = None
    if getattr(generator, "reads_clusters", True):
        clusters = clusters_find(agent=agent, window=window, samples=samples.result())
    counts, histograms = scan.counts, scan.histograms
    replay = {}
    for name, definition in definitions.items():
        if name not in histograms.by_threshold:
            continue
        data = selectors.replay_data(agent=agent, definition=definition, histograms=histograms.by_threshold[name])
        if data is not None:
            replay[name] = data
    notes: list[str] = _replay_notes(agent=agent, definitions=definitions, replay=replay, unscored=histograms.unscored)
    excluded: dict[str, str] = {}
    for name in sorted(selectors.rolled_back_thresholds(agent=agent, since=since, now=now)):
        excluded[name] = "its last change was rolled back since the previous cycle; no proposal this cycle"
        notes.append(f"no proposal for {name}: its last change was rolled back since the previous cycle")
    plan = rejection_memories(agent=agent, now=now)
    constraints = [
        {
            "thresholdName": m.threshold_name,
            "direction": m.direction,
            "rejections": len(m.rationales),
            "approverRationales": m.rationales,
            "evidenceAtRejection": m.evidence_at_rejection,
        }
        for m in plan.active
    ]
    for m in plan.new:
        notes.append(
            f"rejection memory: {m.threshold_name} {m.direction} rejected {len(m.rationales)} times in a row; "
            "the approvers' rationales are now a constraint"
        )
    rise_at = selectors.first_rise_in_window(agent=agent, window=window)
    creep = threshold_creep(
        counts.weeks,
        change_week=selectors.week_key(agent=agent, at=rise_at) if rise_at is not None else None,
        min_escalations=the_rules["CREEP_MIN_ESCALATIONS"],
        alpha=the_rules["CREEP_ALPHA"],
    )
    references = miss_references(agent=agent, window=window, now=now, replay=replay, live=live)
    allowed, left = allowed_ranges(agent=agent, now=now, definitions=definitions)
    locked = lock_sentence(agent)
    ctx = GenerationContext(
        agent=agent,
        window=window,
        definitions=definitions,
        live=live,
        replay=replay,
        objective=Objective(
            kind=agent.objective,
            miss_tolerance=the_rules["MISS_TOLERANCE"],
            miss_cost=agent.miss_cost,
            miss_slack=the_rules["MISS_BUDGET_SLACK"],
            miss_slack_cases=the_rules["MISS_BUDGET_SLACK_CASES"],
            noise_floor_max=the_rules["NOISE_FLOOR_MAX"],
            risk_share=the_rules["RISK_MATERIAL_SHARE"],
        ),
        max_move=the_rules["MAX_MOVE_FRACTION"],
        min_evidence=the_rules["MIN_EVIDENCE_ENTRIES"],
        clusters=clusters if clusters is not None else [],
        weekly_trends=[w.as_dict() for w in counts.weeks],
        constraints=constraints,
        excluded=excluded,
        allowed=allowed,
        references=references.by_threshold,
    )
    if (locked or in_baseline(counts.response_days, the_rules)) and not isinstance(generator, StatisticalGenerator):
        # A locked config, or one still in its baseline, gets no proposal whatever the model says: the offline
        # replay is enough to report.
        why = "config locked" if locked else "baseline period"
        notes.append(f"{why}: the statistical replay is used for the report and the model is not asked")
        generator = StatisticalGenerator()
    with lagging_reads():  # the evidence: counts and ids of the window's decisions
        generated = generator.generate(ctx)
    if clusters is None:
        clusters = clusters_find(agent=agent, window=window, samples=samples.result())
    notes.extend(generated.notes)
    candidates = _apply_memories(generated.candidates, plan, now=now, notes=notes)
    if creep.fired:
        notes.append(f"threshold creep: {creep.reason}")
    facts = CycleFacts(
        responded=counts.responded,
        # A modify to a weaker action counts as a dismissal for tuning (contract, "Human response").
        dismissals=counts.by_label.get("dismiss", 0),
        response_rate=counts.response_rate,
        response_days=counts.response_days,
        creep=creep.fired,
        creep_text=creep.reason if creep.fired else "",
        locked=locked,
        changes_left=left,
        held=tuple(generated.held),
    )
    outcome = rules_apply(candidates=candidates, facts=facts, rules=the_rules)
    notes.extend(outcome.notes)
    if excluded and outcome.proposals is not None:
        outcome.summary += " " + " ".join(
            f"No proposal for {name}: its last change was rolled back since the previous cycle." for name in excluded
        )
    if any(n.startswith("Claude") for n in generated.notes):
        outcome.summary += " The model was unavailable; the statistical proposals are used."
    if generated.generator == "claude" and any(n.startswith("dropped a model proposal") for n in generated.notes):
        dropped = sum(n.startswith("dropped a model proposal") for n in generated.notes)
        outcome.summary += f" {dropped} model proposal(s) failed validation and were dropped (see the run's notes)."
    stats = {
        "decisions": counts.decisions,
        "queued": counts.queued,
        "responded": counts.responded,
        "responseRate": counts.response_rate,
        "dismissalRate": facts.dismissal_rate,
        "responses": counts.by_response,
        "labels": counts.by_label,
        "responseDays": round(counts.response_days, 2),
        "unscoredDecisions": histograms.unscored,
        "byThreshold": counts.by_threshold,
        "weeklyTrends": [w.as_dict() for w in counts.weeks],
        "thresholdCreep": creep.fired,
        "creepTest": creep.as_dict(),
        "missReference": {
            "label": references.label,
            "provisional": any(r.provisional for r in references.by_threshold.values()),
            "byThreshold": {
                name: {"rate": r.rate, "misses": r.misses, "realCases": r.real, "spent": r.spent}
                for name, r in references.by_threshold.items()
            },
        },
        "heldByBudget": list(generated.held),
        "allowedRanges": {name: [lo, hi] for name, (lo, hi) in allowed.items()},
        "changesLeft": left,
        "locked": (
            {
                "by": getattr(agent.locked_by, "username", None),
                "at": agent.locked_at.isoformat() if agent.locked_at else None,
                "rationale": agent.lock_rationale,
            }
            if agent.is_locked
            else None
        ),
        "replayTotals": {
            name: {
                "falseAlarmPopulation": data.negatives_total,
                "positivePopulation": data.positives_total,
                "rows": int(np.sum(data.negatives) + np.sum(data.positives)),
            }
            for name, data in replay.items()
        },
        "constraints": constraints,
    }
    return CycleResult(outcome, generated, clusters, stats, notes, plan, references.to_save)


def _store(*, run: TunerRun, agent: Agent, result: CycleResult, now: datetime, started: float) -> TunerRun:
    """Everything the cycle produced, in one transaction, if this worker still holds the run."""
    outcome = result.outcome
    output = {
        "proposals": [c.as_output() for c in outcome.proposals],
        "summary": outcome.summary,
        "systemHealth": outcome.system_health,
    }
    with transaction.atomic():
        locked = TunerRun.objects.select_for_update().get(pk=run.pk)
        if locked.status != TunerRun.Status.RUNNING or locked.started_at != run.started_at:
            return locked  # another worker took the run over; its answer stands
        if result.reference is not None:
            ref = result.reference
            MissReference.objects.update_or_create(
                agent=agent,
                defaults={
                    "period_start": ref.period_start,
                    "period_end": ref.period_end,
                    "note": ref.note,
                    "set_by": ref.set_by,
                    "figures": ref.figures,
                    "measured_start": ref.measured_start,
                    "measured_end": ref.measured_end,
                    "measured_at": ref.measured_at,
                },
            )
        for memory in result.plan.new:
            memory.save()
        for memory in result.plan.lifted:
            if memory.pk is None:
                memory.save()
            else:
                RejectionMemory.objects.filter(pk=memory.pk).update(lifted_at=memory.lifted_at)
        Cluster.objects.filter(run=locked).delete()
        Cluster.objects.bulk_create(
            [
                Cluster(
                    run=locked,
                    kind=c["kind"],
                    label=c["label"],
                    size=c["size"],
                    share=c["share"],
                    thresholds=c["thresholds"],
                    confidence_min=c["confidenceRange"][0],
                    confidence_max=c["confidenceRange"][1],
                    distinguishing_features=c["distinguishingFeatures"],
                    rules=c["rules"],
                    sample_entry_ids=c["sampleEntryIds"],
                )
                for c in result.clusters
            ]
        )
        # A new cycle's analysis replaces the last one's: its pending proposals are superseded, whether or not
        # this cycle proposes anything.
        older = list(Proposal.objects.select_for_update().filter(agent=agent, status=Proposal.Status.PENDING))
        if older:
            for old in older:
                old.status = Proposal.Status.SUPERSEDED
                old.save(update_fields=["status"])
                audit_record(
                    kind="proposal.superseded",
                    agent=agent,
                    at=now,
                    actor_label="tuner",
                    threshold_name=old.threshold_name,
                    proposal=old,
                    run=locked,
                    message=f"superseded by cycle {locked.cycle}",
                )
        for rank, c in enumerate(outcome.proposals, start=1):
            proposal = Proposal.objects.create(
                agent=agent,
                run=locked,
                rank=rank,
                threshold_name=c.threshold_name,
                current_value=c.current_value,
                proposed_value=c.proposed_value,
                direction=c.direction,
                confidence=c.confidence,
                expected_impact=c.expected_impact,
                impact=c.impact,
                evidence_count=c.evidence_count,
                sample_entry_ids=c.sample_entry_ids,
                risk_assessment=c.risk_assessment,
                risk_flagged=c.risk_flagged,
                clusters=proposal_clusters(
                    agent=agent,
                    clusters=result.clusters,
                    threshold_name=c.threshold_name,
                    direction=c.direction,
                    current=c.current_value,
                    proposed=c.proposed_value,
                ),
                created_at=now,
            )
            ProposalEvidence.objects.bulk_create(
                [
                    ProposalEvidence(proposal=proposal, entry_id=entry_id, kind=c.evidence_kind, is_sample=True)
                    for entry_id in dict.fromkeys(c.sample_entry_ids)
                ]
            )
            audit_record(
                kind="proposal.created",
                agent=agent,
                at=now,
                actor_label="tuner",
                threshold_name=c.threshold_name,
                before=c.current_value,
                after=c.proposed_value,
                proposal=proposal,
                run=locked,
                evidence_entry_ids=list(c.sample_entry_ids),
                detail={"confidence": c.confidence, "riskFlagged": c.risk_flagged, "impact": c.impact},
                message=c.expected_impact,
            )
        locked.status = TunerRun.Status.DONE
        locked.output = output
        locked.generator = result.generated.generator
        locked.prompt_hash = result.generated.prompt_hash
        locked.notes = result.notes
        locked.errors = result.generated.errors
        locked.stats = result.stats
        locked.finished_at = timezone.now()
        locked.duration_seconds = round(time.monotonic() - started, 3)
        locked.save()
        audit_record(
            kind="tuner.run",
            agent=agent,
            at=now,
            actor_label="tuner",
            run=locked,
            detail={
                "cycle": locked.cycle.isoformat(),
                "generator": locked.generator,
                "proposals": len(outcome.proposals),
                "systemHealth": outcome.system_health,
            },
            message=outcome.summary,
        )
        if outcome.proposals:
            run_id = locked.pk
            outbox_send("notify.proposals", run_id=run_id)  # after commit; kept and retried if mail is down
    logger.info(
        "tuner.run",
        extra={"agent_id": agent.agent_id, "run_id": locked.pk, "proposals": len(outcome.proposals)},
    )
    return locked


def tuner_cycle_run(
    *, agent: Agent, now: datetime, requested_by: Any = None, generator: Generator | None = None
) -> TunerRun:
    """One synchronous cycle for (agent, the Monday of ``now``'s ISO week in the agent's timezone). Idempotent:
    a cycle already done is returned as it is."""
    window = selectors.cycle_window(agent=agent, now=now)
    run, won = _claim(agent=agent, window=window, now=now, requested_by=requested_by)
    if not won:
        return run
    started = time.monotonic()
    previous = selectors.previous_run(agent=agent, cycle=window.cycle)
    since = previous.created_at if previous is not None else window.start
    try:
        with Heartbeat(run):
            result = cycle_compute(
                agent=agent, window=window, now=now, since=since, generator=generator or default_generator()
            )
        return _store(run=run, agent=agent, result=result, now=now, started=started)
    except Exception as exc:
        TunerRun.objects.filter(pk=run.pk, status=TunerRun.Status.RUNNING, started_at=run.started_at).update(
            status=TunerRun.Status.FAILED,
            errors=[*run.errors, f"{type(exc).__name__}: {exc}"],
            finished_at=timezone.now(),
            duration_seconds=round(time.monotonic() - started, 3),
        )
        logger.exception("tuner.run_failed", extra={"agent_id": agent.agent_id, "run_id": run.pk})
        raise


def tuner_runs_due(*, now: datetime) -> list[int]:
    """Agents the weekly fan-out should run for."""
    return list(Agent.objects.order_by("pk").values_list("pk", flat=True))


def tuner_run_request(*, agent: Agent, now: datetime, requested_by: Any = None) -> TunerRun:
    """Ask for a cycle now: the run row for this cycle (made if missing), its task sent after commit. A cycle
    already done, or running in a worker that still heartbeats, is returned as it is and nothing is sent; one left
    running by a worker that stopped heartbeating is sent again, and the worker that gets it takes it over."""
    window = selectors.cycle_window(agent=agent, now=now)
    with transaction.atomic():
        run, created = TunerRun.objects.get_or_create(
            agent=agent,
            cycle=window.cycle,
            defaults={
                "status": TunerRun.Status.PENDING,
                "window_start": window.start,
                "window_end": window.end,
                "requested_by": requested_by if getattr(requested_by, "pk", None) else None,
                "created_at": now,
            },
        )
        stale = TunerRun.objects.filter(stale_runs(timezone.now()), pk=run.pk).exists()
        if run.status in (TunerRun.Status.PENDING, TunerRun.Status.FAILED) or stale:
            # Recorded with the run and sent to the broker after commit; kept and retried while the broker is down.
            outbox_send("tuner.cycle", agent_pk=agent.pk)
    return run
