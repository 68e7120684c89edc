"""Reads for the tuner: the window's counts, histograms and trends from one aggregate pass over it (``window_scan``:
one ``GROUP BY`` in the database, folded here, so memory does not grow with the window), bounded samples for
clustering (one query for the three kinds), and evidence look-ups.

A cycle's reads of its window run inside ``window_reads``: on PostgreSQL one transaction with the tuner's own
``work_mem``, ``jit`` and ``enable_sort`` (``SET LOCAL``), on the replica when one is configured
(``loopsite.replica``). The window is always the plain range ``timestamp >= start AND timestamp < end``, so the
decision log's weekly partitions prune."""

import zoneinfo
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import numpy as np
from django.db import connections, router, transaction
from django.db.models import (
    BooleanField,
    Case,
    CharField,
    Count,
    F,
    Field,
    FloatField,
    IntegerField,
    Q,
    QuerySet,
    Value,
    When,
)
from django.db.models import Window as SqlWindow
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast, Mod, RowNumber
from django.utils.dateparse import parse_datetime

from auditlog.models import Decision, ReviewReason
from auditlog.selectors import rule_filter
from loopsite.replica import lagging_reads
from loopsite.rows import converted, converters
from thresholds.models import Agent, ConfigVersion, ThresholdDefinition
from tuner.analysis import BINS, ReplayData, WeekStats
from tuner.clusters import cluster_as_dict, cluster_sentence, cluster_trends
from tuner.models import Cluster, MissReference, Proposal, TunerRun


@dataclass(frozen=True)
class Window:
    cycle: date
    start: datetime
    end: datetime
    # What the cycle's aggregate pass found in this window (``window_scan``), once made: evidence is then counted
    # from it rather than by another pass.
    scan: "WindowScan | None" = field(default=None, compare=False, repr=False)


def cycle_window(*, agent: Agent, now: datetime) -> Window:
    """The cycle is the Monday of ``now``'s ISO week in the agent's timezone; the window is the
    ``agent.window_weeks`` weeks before ``now``."""
    local = now.astimezone(zoneinfo.ZoneInfo(agent.timezone or "UTC"))
    cycle = local.date() - timedelta(days=local.weekday())
    return Window(cycle=cycle, start=now - timedelta(weeks=agent.window_weeks or 4), end=now)


LABELS = ("approve", "dismiss", "escalate")


def label_of(actions: Sequence[str], response: str | None, action: str, modified: str | None) -> str | None:
    """``label_expression`` in Python, for rows the aggregate pass grouped by response, action and modified action."""
    if response is None:
        return None
    if response in LABELS:
        return response
    if response == "modify" and action in actions and modified in actions:
        i, j = actions.index(action), actions.index(modified)
        return "escalate" if j > i else "dismiss" if j < i else "approve"
    return "dismiss"


def label_expression(
    actions: list[str], values: Mapping[str, Any] | None = None, output_field: "Field[Any, Any] | None" = None
) -> Case:
    """``auditlog.labels.effective_label`` in SQL: modify counts as escalate when stronger, dismiss when weaker.
    With ``values``, each label's branch yields ``values[label]`` instead (NULL for a label not in it), so a
    per-label expression costs one evaluation of the label per row."""

    def then(label: str) -> Any:
        if values is None:
            return Value(label)
        return values.get(label, Value(None))

    if values is None:
        whens = [When(response_action__in=list(LABELS), then=F("response_action"))]
    else:
        whens = [When(response_action=label, then=then(label)) for label in LABELS]
    for i, taken in enumerate(actions):
        for j, modified in enumerate(actions):
            label = "escalate" if j > i else "dismiss" if j < i else "approve"
            whens.append(
                When(response_action="modify", action=taken, modified_action=modified, then=then(label)),
            )
    if values is None:
        return Case(*whens, default=Value("dismiss"), output_field=CharField())
    return Case(*whens, default=then("dismiss"), output_field=output_field)


def window_decisions(*, agent: Agent, window: Window) -> QuerySet[Decision]:
    return Decision.objects.filter(agent=agent, timestamp__gte=window.start, timestamp__lt=window.end)


# The tuner's reads of its window, on PostgreSQL (``SET LOCAL``: for the transaction only). The planner cannot know
# how few groups the aggregate pass returns (it takes a key such as the week or a confidence bin to have as many
# values as its column), so it sizes a hash table by the window's rows and, once that outgrows work_mem, sorts the
# whole window to group it instead (an external sort at 1M rows and 4 MB). ``enable_sort = off`` keeps it hashing:
# a few thousand groups, a few MB. It costs nothing elsewhere in the transaction: the samples' window function must
# sort its few thousand rows either way, and the evidence look-ups read the window's end by its index. The
# work_mem gives those hash tables and sorts room in memory; JIT compiling costs tens of milliseconds a query and
# buys nothing on one pass. The same estimate keeps the planner from aggregating in parallel workers (it sees no
# rows saved), so left alone it scans a 20M-decision window in one process; ``parallel_tuple_cost = 0`` lets one
# worker read and compute the rows while this process aggregates them (10.3 s to 6.6 s at 20M, docs/bench-tuner.md).
# One worker, not more: the aggregating process is then the bottleneck, and more workers only take CPU from it
# (7.8 s with two on two cores).
TUNER_WORK_MEM = "64MB"
TUNER_SETTINGS_SQL = (
    f"SET LOCAL work_mem = '{TUNER_WORK_MEM}'; SET LOCAL jit = off; SET LOCAL enable_sort = off; "
    "SET LOCAL parallel_tuple_cost = 0; SET LOCAL max_parallel_workers_per_gather = 1"
)


@contextmanager
def _tuned(alias: str, *, one_snapshot: bool = False) -> Iterator[None]:
    """On PostgreSQL, a transaction on ``alias`` (or a savepoint in the one already open) with the tuner's settings;
    elsewhere nothing (SQLite's transactions would hold its write lock for the reads). ``one_snapshot``: a new
    transaction is REPEATABLE READ, so all its statements, and a read beside it (``tuner.beside``), see the
    database as its first statement did."""
    connection = connections[alias]
    if connection.vendor != "postgresql":
        yield
        return
    with transaction.atomic(using=alias):
        with connection.cursor() as cursor:
            if one_snapshot and len(connection.atomic_blocks) == 1:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cursor.execute(TUNER_SETTINGS_SQL)
        yield


@contextmanager
def window_reads() -> Iterator[str]:
    """The scope of a cycle's reads of its window: they may lag (``loopsite.replica``: from the replica when one is
    configured), and on PostgreSQL they run in one transaction on that database with the tuner's settings
    (``TUNER_SETTINGS_SQL``, ``SET LOCAL``), which end with the block, and in one snapshot: the aggregate pass and
    the cluster samples see the same rows. Gives the database alias read."""
    with lagging_reads():
        alias = router.db_for_read(Decision)
        with _tuned(alias, one_snapshot=True):
            yield alias


@dataclass(frozen=True)
class WindowCounts:
    decisions: int
    queued: int
    responded: int
    queued_responded: int
    by_response: dict[str, int]
    by_label: dict[str, int]
    first_response_at: datetime | None  # the earliest decision (by its timestamp) that has a response
    end: datetime  # the window's end: the cycle's moment
    tz: zoneinfo.ZoneInfo  # the agent's timezone, whose calendar days are counted
    by_threshold: dict[str, dict[str, int]]
    weeks: list[WeekStats]

    @property
    def response_rate(self) -> float | None:
        return self.queued_responded / self.queued if self.queued else None

    @property
    def response_days(self) -> float:
        """Calendar days (in the agent's timezone) of decisions the window holds since the first one with a
        response, by decision time, up to the cycle's day. Responses lag their decisions by a day or two, so the
        last days are counted although their answers are still coming: an agent that starts on a Monday has 14
        days at the cycle two Mondays later, whatever the hour it started."""
        if self.first_response_at is None:
            return 0.0
        first = self.first_response_at.astimezone(self.tz).date()
        return float(max(0, (self.end.astimezone(self.tz).date() - first).days))


Histograms = dict[tuple[str, str, bool], np.ndarray]


def window_counts(*, agent: Agent, window: Window) -> WindowCounts:
    """Phase 1: counts per response, per label, per threshold and per week (``window_scan``'s)."""
    return window_scan(agent=agent, window=window, definitions={}).counts


# ------------------------------------------------------------------------------------ a rule-based agent's rules


def rule_score(definition: ThresholdDefinition) -> Any:
    """The score a threshold's rule compares with its value: the ``score_feature`` of the decision's features
    when set (a JSON key read as a number, on SQLite and PostgreSQL alike), else the decision's confidence."""
    if definition.score_feature:
        return Cast(KeyTextTransform(definition.score_feature, "features"), FloatField())
    return F("confidence")


@dataclass(frozen=True)
class RulePopulations:
    """Where a rule-based agent's threshold is judged: ``gated``, the decisions at its action that its rule fired
    alone (no other rule for the same or a stronger action fired with it: moving this threshold changes them,
    and nothing else at its action); ``below``, the decisions one action below, which a lowering would bring to
    its action when their score for this rule reaches the new value."""

    action: str
    below_action: str
    gated: Q
    below: Q
    score: Any


def rule_populations(
    *, agent: Agent, definition: ThresholdDefinition, definitions: dict[str, ThresholdDefinition] | None = None
) -> RulePopulations | None:
    """The populations of ``definition`` for a rule-based agent; None for a threshold that gates the weakest
    action (or an unknown one)."""
    actions = list(agent.actions)
    if definition.action not in actions or actions.index(definition.action) == 0:
        return None
    rank = actions.index(definition.action)
    if definitions is None:
        definitions = {d.name: d for d in ThresholdDefinition.objects.filter(agent=agent)}
    own = definition.rule_name
    others = sorted(
        {
            d.rule_name
            for d in definitions.values()
            if d.name != definition.name
            and d.rule_name != own
            and d.action in actions
            and actions.index(d.action) >= rank
        }
    )
    gated = Q(action=definition.action) & rule_filter(own)
    for other in others:
        gated &= ~rule_filter(other)
    below_action = actions[rank - 1]
    return RulePopulations(
        action=definition.action,
        below_action=below_action,
        gated=gated,
        below=Q(action=below_action),
        score=rule_score(definition),
    )


@dataclass(frozen=True)
class ThresholdHistograms:
    """Per threshold, the histograms its replay reads (``replay_data``), and the responded decisions of its
    populations that carry no score (no confidence, or no ``score_feature``) and so cannot be replayed."""

    by_threshold: dict[str, Histograms]
    unscored: dict[str, int]


def threshold_histograms(
    *, agent: Agent, window: Window, definitions: dict[str, ThresholdDefinition]
) -> ThresholdHistograms:
    """What each threshold is replayed on (``window_scan``'s). A scored agent's thresholds share one confidence
    histogram. A rule-based agent's threshold gets its own: its rule's populations (``rule_populations``) by its
    rule's score, so two rules that gate one action are judged each on its own hits."""
    return window_scan(agent=agent, window=window, definitions=definitions).histograms


# ------------------------------------------------------------------------------------ the one pass over the window

# The window's rows come back grouped by these, with COUNT(*) and MIN(timestamp): ``k`` is the slice (0: every
# decision, by week and threshold name, and for a scored agent the responded ones by confidence bin; j > 0: the
# responded decisions of a rule-based agent's j-th threshold's populations, by its rule's score), ``hb`` the
# histogram bin (floor(score * BINS), held to -1..BINS+1) and ``cb`` the comparison bin (the k with
# k / BINS <= score < (k + 1) / BINS as the database compares them: the two differ only where rounding puts a
# score on the other side of a grid value).
SCAN_COLUMNS = ("k", "wk", "tn", "ac", "rr", "qd", "ra", "ma", "hb", "cb", "n", "first")
EDGE = BINS + 1  # the bins held at -1 and BINS + 1: below 0, and from (BINS + 1) / BINS up
RESPONSES = ("approve", "dismiss", "escalate", "modify")
WEEK_FIELDS = ("decisions", "queued", "responses", "queued_responses", *RESPONSES)


def _bins_sql(score: str) -> tuple[str, str]:
    """The histogram bin and the comparison bin of ``score`` (SQL), NULL for a NULL score."""
    b, top, scale = f"FLOOR({score} * {BINS})", repr(EDGE / BINS), repr(float(BINS))
    edges = f"WHEN {score} < 0 THEN -1 WHEN {score} >= {top} THEN {EDGE}"
    hb = f"CASE {edges} ELSE {b} END"
    cb = (
        f"CASE {edges} WHEN {score} < {b} / {scale} THEN {b} - 1 "
        f"WHEN {score} >= ({b} + 1) / {scale} THEN {b} + 1 ELSE {b} END"
    )
    return hb, cb


@dataclass(frozen=True)
class Population:
    """A rule-based agent's threshold as the scan slices it: the responded decisions of its populations
    (``rule_populations``: gated or one action below), and the score its rule compares."""

    name: str
    member: Q
    score: Any


def week_starts(*, window: Window, tz: zoneinfo.ZoneInfo) -> list[datetime]:
    """The local Mondays at midnight in ``tz`` of the weeks the window touches, the first at or before its start."""
    first = window.start.astimezone(tz).date()
    day = first - timedelta(days=first.weekday())
    starts = [datetime.combine(day, time.min, tzinfo=tz)]
    while (following := datetime.combine(day + timedelta(days=7 * len(starts)), time.min, tzinfo=tz)) < window.end:
        starts.append(following)
    return starts


def week_number(starts: Sequence[datetime]) -> Case:
    """Which of ``starts``'s weeks a decision falls in (0 for the first): the week ``TruncWeek`` in the agent's
    timezone gives it, found by comparing its timestamp with each Monday's midnight (a local midnight that a
    daylight-saving change skips counts from the change). Converting every row to local time to truncate it, as
    ``TruncWeek`` does, was a quarter of the aggregate pass's time."""
    whens = [When(timestamp__lt=start, then=Value(i)) for i, start in enumerate(starts[1:])]
    return Case(*whens, default=Value(len(starts) - 1), output_field=IntegerField())


def _scan_sql(
    *, agent: Agent, window: Window, weeks: Sequence[datetime], populations: list[Population]
) -> tuple[str, list[Any], str]:
    """The one ``GROUP BY`` over the window (``SCAN_COLUMNS``), its parameters and the database alias it reads.

    The per-row expressions are the ORM's (the week's number, ``week_number``, a rule's JSON score, its
    matched-rules filter), compiled for the database the window is read from; a rule-based agent's rows are
    fanned out to one row per slice they belong to inside the same scan (a lateral VALUES list on PostgreSQL,
    a join to the slice numbers on SQLite), never read twice."""
    qs = window_decisions(agent=agent, window=window).order_by()
    columns: dict[str, Any] = {
        "wk": week_number(weeks),
        "tn": F("threshold_name"),
        "ac": F("action"),
        "rr": F("review_reason"),
        "qd": F("queued"),
        "ra": F("response_action"),
        "ma": F("modified_action"),
        "ts": F("timestamp"),
        "conf": F("confidence"),
    }
    for j, population in enumerate(populations, start=1):
        columns[f"m{j}"] = Case(
            When(population.member, then=Value(True)), default=Value(False), output_field=BooleanField()
        )
        columns[f"s{j}"] = Case(When(population.member, then=population.score), output_field=FloatField())
    inner = qs.annotate(**columns).values(*columns)
    alias = inner.db
    connection = connections[alias]
    inner_sql, params = inner.query.get_compiler(using=alias).as_sql()
    q = connection.ops.quote_name
    x = {name: f"x.{q(name)}" for name in columns}
    group = "GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10"
    # The earliest timestamp of each group: on PostgreSQL as microseconds since the epoch, a plain integer, so
    # thousands of groups do not each pay for a timestamp's parsing (SQLite returns its text, parsed once).
    least = f"MIN({x['ts']})"
    if connection.vendor == "postgresql":
        least = f"CAST(EXTRACT(EPOCH FROM MIN({x['ts']})) * 1000000 AS bigint)"
    if not populations:
        # A scored agent: one slice, the confidence bins of the responded decisions.
        hb, cb = _bins_sql(x["conf"])
        responded = f"{x['ra']} IS NOT NULL"
        sql = (
            f"SELECT 0, {x['wk']}, {x['tn']}, {x['ac']}, {x['rr']}, {x['qd']}, {x['ra']}, {x['ma']}, "
            f"CASE WHEN {responded} THEN {hb} END, CASE WHEN {responded} THEN {cb} END, COUNT(*), {least} "
            f"FROM ({inner_sql}) x {group}"
        )
        return sql, list(params), alias
    slices = range(len(populations) + 1)
    if connection.vendor == "postgresql":
        rows = ", ".join(
            ["(0, TRUE, NULL::double precision)"] + [f"({j}, {x[f'm{j}']}, {x[f's{j}']})" for j in slices[1:]]
        )
        fan_out = f"CROSS JOIN LATERAL (VALUES {rows}) AS p(k, m, s)"
        member, score = "p.m", "p.s"
    else:
        # SQLite runs the left side of a CROSS JOIN as the outer loop: the window is still read once.
        fan_out = "CROSS JOIN (" + " UNION ALL ".join(f"SELECT {j} AS k" for j in slices) + ") AS p"
        member = "CASE p.k WHEN 0 THEN 1 " + " ".join(f"WHEN {j} THEN {x[f'm{j}']}" for j in slices[1:]) + " END"
        score = "CASE p.k " + " ".join(f"WHEN {j} THEN {x[f's{j}']}" for j in slices[1:]) + " END"
    hb, cb = _bins_sql(score)
    first = "CASE WHEN p.k = 0 THEN {} END"
    sql = (
        f"SELECT p.k, {first.format(x['wk'])}, {first.format(x['tn'])}, {x['ac']}, {x['rr']}, "
        f"{first.format(x['qd'])}, {x['ra']}, {x['ma']}, {hb}, {cb}, COUNT(*), {least} "
        f"FROM ({inner_sql}) x {fan_out} WHERE {member} {group}"
    )
    return sql, list(params), alias


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _aware(value: Any) -> datetime | None:
    """A group's earliest timestamp as the scan returns it (microseconds since the epoch, or SQLite's text in
    UTC), aware."""
    if value is None or isinstance(value, datetime):
        return value
    if isinstance(value, int):
        return EPOCH + timedelta(microseconds=value)
    parsed = parse_datetime(str(value))
    if parsed is None:
        raise ValueError(f"not a timestamp: {value!r}")
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class WindowScan:
    """What one aggregate pass over a window found: the counts and trends, the replay's histograms and, per
    population ('' for the agent's confidence; a rule-based agent's threshold by its rule's score), action and
    effective label, the responded decisions by comparison bin (index ``k + 1`` for bin ``k``, -1..BINS+1), from
    which evidence on the replay's grid is counted exactly."""

    window: Window  # the window, carrying this scan
    counts: WindowCounts
    histograms: ThresholdHistograms
    evidence_bins: dict[tuple[str, str, str], np.ndarray]
    populations: frozenset[str]

    def evidence_count(self, *, population: str, action: str, label: str, low: float, high: float) -> int | None:
        """The responded decisions of ``population`` at ``action`` with this effective label and ``low <= score <
        high``; None when the scan cannot tell (an unknown population, or a bound off the 0.001 grid)."""
        if population not in self.populations:
            return None
        k_low, k_high = _grid_index(low), _grid_index(high)
        if k_low is None or k_high is None:
            return None
        counts = self.evidence_bins.get((population, action, label))
        if counts is None or k_high <= k_low:
            return 0
        return int(counts[k_low + 1 : k_high + 1].sum())


def _grid_index(value: float) -> int | None:
    """``k`` when ``value`` is the grid value k / BINS (as a float, exactly), for 0 <= k <= BINS + 1."""
    if not np.isfinite(value):
        return None
    k = round(value * BINS)
    return k if 0 <= k <= EDGE and k / BINS == value else None


def window_scan(
    *, agent: Agent, window: Window, definitions: dict[str, ThresholdDefinition] | None = None
) -> WindowScan:
    """Phase 1 in one aggregate pass over the window (``_scan_sql``), folded here into what the analysis reads:
    the counts and weekly trends (``WindowCounts``), each threshold's histograms (``ThresholdHistograms``) and the
    evidence bins. The rows that come back are bounded by weeks x thresholds x actions x responses x bins, whatever
    the window holds."""
    if definitions is None:
        definitions = {d.name: d for d in ThresholdDefinition.objects.filter(agent=agent)}
    actions = list(agent.actions)
    tz = zoneinfo.ZoneInfo(agent.timezone or "UTC")
    populations: list[Population] = []
    if agent.rule_based:
        for name, definition in sorted(definitions.items()):
            found = rule_populations(agent=agent, definition=definition, definitions=definitions)
            if found is not None:
                member = Q(response_action__isnull=False) & (found.gated | found.below)
                populations.append(Population(name, member, found.score))
    starts = week_starts(window=window, tz=tz)
    sql, params, alias = _scan_sql(agent=agent, window=window, weeks=starts, populations=populations)
    week_keys = [start.date().isoformat() for start in starts]  # as WeekStats.week_start spells a week
    with _tuned(alias), connections[alias].cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()

    decisions = queued = responded = queued_responded = 0
    earliest: Any = None  # as the database returns it: comparable among themselves
    by_response: dict[str, int] = {"approve": 0, "dismiss": 0, "escalate": 0, "modify": 0}
    by_label = {"approve": 0, "dismiss": 0, "escalate": 0}
    by_threshold: dict[str, dict[str, int]] = {}
    weekly: dict[str, dict[str, int]] = {}
    hist_keys = [""] + [p.name for p in populations]  # slice k's population
    histograms: dict[str, Histograms] = {key: {} for key in hist_keys}
    unscored: dict[str, int] = {}
    evidence: dict[tuple[str, str, str], np.ndarray] = {}
    labels: dict[tuple[Any, Any, Any], str | None] = {}
    for k, wk, tn, ac, rr, qd, ra, ma, hb, cb, n, least in rows:
        n = int(n)
        if rr == ReviewReason.SHADOW:
            # Queued only because a proposal's shadow would have fired: read as if the shadow had queued nothing,
            # so the weighted sample stays the uniform one (its answers are the shadow's evidence, not this one's).
            qd, ra, ma = False, None, None
        label = labels.get((ra, ac, ma), "")
        if label == "":
            label = labels[ra, ac, ma] = label_of(actions, ra, ac, ma)
        if k == 0:
            decisions += n
            week = weekly.setdefault(week_keys[int(wk)], dict.fromkeys(WEEK_FIELDS, 0))
            week["decisions"] += n
            if qd:
                queued += n
                week["queued"] += n
            if ra is not None:
                responded += n
                week["responses"] += n
                if qd:
                    queued_responded += n
                    week["queued_responses"] += n
                if ra in RESPONSES:
                    week[ra] += n
                by_response[str(ra)] = by_response.get(str(ra), 0) + n
                per_threshold = by_threshold.setdefault(tn, {})
                per_threshold[str(ra)] = per_threshold.get(str(ra), 0) + n
                by_label[str(label)] = by_label.get(str(label), 0) + n
                earliest = least if earliest is None or (least is not None and least < earliest) else earliest
            if populations or ra is None:
                continue  # a rule-based agent's histograms are its slices'; unanswered rows have none
        population = hist_keys[int(k)]
        if hb is None:
            unscored[population] = unscored.get(population, 0) + n
            continue
        key = (str(ac), str(label), rr == ReviewReason.SAMPLED)
        hist = histograms[population].setdefault(key, np.zeros(BINS + 1))
        hist[min(BINS, max(0, int(hb)))] += n
        bins = evidence.setdefault((population, str(ac), str(label)), np.zeros(BINS + 3, dtype=np.int64))
        bins[min(EDGE, max(-1, int(cb))) + 1] += n

    if populations:
        shown = {p.name for p in populations}
        by_histogram = {name: histograms[name] for name in sorted(shown)}
        missing = {name: unscored[name] for name in sorted(shown) if unscored.get(name)}
    else:
        by_histogram = {name: histograms[""] for name in definitions}
        missing = {name: unscored[""] for name in definitions} if unscored.get("") else {}
    counts = WindowCounts(
        decisions=decisions,
        queued=queued,
        responded=responded,
        queued_responded=queued_responded,
        by_response=by_response,
        by_label=by_label,
        first_response_at=_aware(earliest),
        end=window.end,
        tz=tz,
        by_threshold={name: dict(sorted(v.items())) for name, v in sorted(by_threshold.items())},
        weeks=[WeekStats(week_start=key, **values) for key, values in sorted(weekly.items())],
    )
    scan = WindowScan(
        window=window,
        counts=counts,
        histograms=ThresholdHistograms(by_histogram, missing),
        evidence_bins=evidence,
        populations=frozenset(hist_keys[1:] if populations else [""]),
    )
    return replace(scan, window=replace(window, scan=scan))


def replay_data(*, agent: Agent, definition: ThresholdDefinition, histograms: Histograms) -> ReplayData | None:
    """The threshold's two populations: decisions at the action it gates, and those one action below."""
    actions = list(agent.actions)
    if definition.action not in actions or actions.index(definition.action) == 0:
        return None
    below = actions[actions.index(definition.action) - 1]
    rate = agent.review_sample_rate if agent.review_sample_rate > 0 else 1.0
    # Rows: at the gated action (all queued, weight 1); one below, queued (weight 1) and sampled (1 / rate).
    data = ReplayData.empty((1.0, 1.0, 1.0 / rate), gated=(True, False, False))
    for (action, label, sampled), hist in histograms.items():
        if action == definition.action:
            row, target = 0, data.negatives if label == "dismiss" else data.positives
        elif action == below:
            row, target = 2 if sampled else 1, data.positives if label == "escalate" else data.negatives
        else:
            continue
        target[row] += hist
    return data


def evidence_queryset(
    *,
    agent: Agent,
    window: Window,
    definition: ThresholdDefinition,
    kind: str,
    low: float,
    high: float,
    definitions: dict[str, ThresholdDefinition] | None = None,
) -> QuerySet[Decision]:
    """Decisions that support moving ``definition`` across [low, high): dismissals at its action (for an
    increase) or escalations one action below (for a decrease), with confidence in the band. For a rule-based
    agent, only the threshold's own populations (``rule_populations``), by its rule's score: a dismissal that
    another rule fired is never evidence against this one."""
    actions = list(agent.actions)
    rank = actions.index(definition.action)
    action = definition.action if kind == "dismiss" else actions[max(0, rank - 1)]
    qs = window_decisions(agent=agent, window=window).filter(response_action__isnull=False, action=action)
    populations = (
        rule_populations(agent=agent, definition=definition, definitions=definitions) if agent.rule_based else None
    )
    if populations is None:
        qs = qs.filter(confidence__gte=low, confidence__lt=high)
    else:
        qs = (
            qs.filter(populations.gated if kind == "dismiss" else populations.below)
            .annotate(rule_score=populations.score)
            .filter(rule_score__gte=low, rule_score__lt=high)
        )
    return qs.annotate(label=label_expression(actions)).filter(label=kind)


def evidence_entries(
    *,
    agent: Agent,
    window: Window,
    definition: ThresholdDefinition,
    kind: str,
    low: float,
    high: float,
    limit: int,
    definitions: dict[str, ThresholdDefinition] | None = None,
) -> tuple[int, list[str]]:
    """How many decisions are evidence for moving ``definition`` across [low, high) (``evidence_queryset``), and the
    ``limit`` latest of them. A window the cycle has scanned counts them from its scan when the band lies on the
    replay's grid (a statistical proposal always does); otherwise, or for a window not scanned, they are counted
    in the database. The latest are looked for at the end of the window first, over a span where as many as are
    counted would hold a few times ``limit`` if they were spread evenly, and over the whole window only when that
    span holds too few: the answer is the same, without reading the window once more."""
    qs = evidence_queryset(
        agent=agent, window=window, definition=definition, kind=kind, low=low, high=high, definitions=definitions
    )
    actions = list(agent.actions)
    action = definition.action if kind == "dismiss" else actions[max(0, actions.index(definition.action) - 1)]
    count = None
    if window.scan is not None:
        population = definition.name if agent.rule_based else ""
        count = window.scan.evidence_count(population=population, action=action, label=kind, low=low, high=high)
    with _tuned(qs.db):
        if count is None:
            count = qs.count()
        return count, _latest_ids(qs, window=window, count=count, limit=limit)


EVIDENCE_SPAN_FACTOR = 4  # the first span is expected to hold this many times the ids wanted
EVIDENCE_SPAN_GROWTH = 8


def _latest_ids(qs: QuerySet[Decision], *, window: Window, count: int, limit: int) -> list[str]:
    """The ``limit`` latest entry ids of ``qs`` (which holds ``count`` rows), newest first, reading back from the
    window's end: rows older than a span that already holds ``limit`` rows cannot be among them."""
    ordered = qs.order_by("-timestamp", "-seq").values_list("entry_id", flat=True)
    wanted = min(count, limit)
    if wanted <= 0:
        return []
    share = EVIDENCE_SPAN_FACTOR * limit / count
    while share < 1:
        ids = list(ordered.filter(timestamp__gte=window.end - (window.end - window.start) * share)[:limit])
        if len(ids) >= wanted:
            return ids
        share *= EVIDENCE_SPAN_GROWTH
    return list(ordered[:limit])


def entries_gated(
    *,
    agent: Agent,
    window: Window,
    definition: ThresholdDefinition,
    kind: str,
    low: float,
    high: float,
    entry_ids: list[str],
) -> set[str]:
    """Which of ``entry_ids`` are evidence for moving ``definition`` across [low, high) (``evidence_queryset``)."""
    qs = evidence_queryset(agent=agent, window=window, definition=definition, kind=kind, low=low, high=high)
    return set(qs.filter(entry_id__in=entry_ids[:200]).values_list("entry_id", flat=True))


def entries_in_window(*, agent: Agent, window: Window, entry_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The cited entries that exist in the window, with their action, effective label and confidence."""
    rows = (
        window_decisions(agent=agent, window=window)
        .filter(entry_id__in=entry_ids[:200])
        .annotate(label=label_expression(list(agent.actions)))
        .values("entry_id", "action", "label", "confidence", "response_action")
    )
    return {r["entry_id"]: dict(r) for r in rows if r["response_action"] is not None}


@dataclass(frozen=True)
class ClusterRows:
    entry_ids: list[str]
    confidences: list[float | None]  # None: a rule-based agent's decision logged without one
    thresholds: list[str]
    features: list[dict[str, Any]]
    rules: list[list[str]]
    total: int  # rows of this kind in the window (the sample's scale)


def _sample_rows(*, agent: Agent, window: Window, steps: Mapping[str, int], limit: int) -> list[tuple[Any, ...]]:
    """The picked rows of ``cluster_samples``: (label, rank, entry id, confidence, threshold, features[, rules]).

    Two steps in one statement. The pick reads only what the index ``decision_agent_responded`` holds (the agent,
    time and seq of each responded decision, and the three columns its label comes from), so on PostgreSQL it is
    an index-only scan of the responded decisions instead of a second read of the whole window; only the at most
    ``limit`` rows a label keeps are then read from the table, each by its primary key (a lateral join, so each
    look-up prunes to its own week's partition)."""
    actions = list(agent.actions)
    pick = label_expression(
        actions,
        {label: Mod(F("seq"), Value(step)) if step > 1 else Value(0) for label, step in steps.items()},
        output_field=IntegerField(),
    )
    order = [F("timestamp").asc(), F("seq").asc()]
    picks = (
        window_decisions(agent=agent, window=window)
        .filter(response_action__isnull=False)
        .annotate(pick=pick)
        .filter(pick=0)
        .annotate(label=label_expression(actions))
        .annotate(rank=SqlWindow(RowNumber(), partition_by=[F("label")], order_by=order))
        .filter(rank__lte=limit)
        .order_by()
        .values_list("label", "rank", "seq", "timestamp")
    )
    alias = picks.db
    connection = connections[alias]
    picks_sql, params = picks.query.get_compiler(using=alias).as_sql()
    q = connection.ops.quote_name
    columns = ["entry_id", "confidence", "threshold_name", "features"]
    if agent.rule_based:
        columns.append("matched_rules")  # clustered by rule combination; a scored agent's are not read
    wanted = ", ".join(f"d.{q(c)}" for c in columns)
    table, same_seq = q(Decision._meta.db_table), f"d.{q('seq')} = s.c2"
    if connection.vendor == "postgresql":
        # LIMIT 1 (a primary key gives one row anyway) keeps the planner from flattening the lateral subquery
        # into a join it could then answer by hashing a scan of the whole window.
        same_row = f"{same_seq} AND d.{q('timestamp')} = s.c3"
        join = f"CROSS JOIN LATERAL (SELECT {wanted} FROM {table} d WHERE {same_row} LIMIT 1) d"
    else:
        join = f"JOIN {table} d ON {same_seq}"
    sql = f"WITH s(c0, c1, c2, c3) AS ({picks_sql}) SELECT s.c0, s.c1, {wanted} FROM s {join}"
    with _tuned(alias), connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    # A plain cursor gives JSON as its text: the columns are converted as the ORM converts them.
    fields = [Decision._meta.get_field(c) for c in columns]
    plan = [(i + 2, col, found) for i, col, found in converters(connection, fields)]  # type: ignore[arg-type]
    return [tuple(converted(connection, row, plan)) for row in rows]


def cluster_samples(
    *, agent: Agent, window: Window, limit: int, kinds: Sequence[str] = LABELS
) -> dict[str, ClusterRows]:
    """For each effective label in ``kinds``, up to ``limit`` responded decisions with it, oldest first: all of them,
    or a deterministic every-k-th sample (by ``seq``, k = ceil(total / limit)) when there are more, so memory stays
    bounded. One query for every kind: each label's totals come from the window's scan (counted here when the
    window has none), its pick is evaluated with the label in one pass, and at most ``limit`` per label come back."""
    actions = list(agent.actions)
    if window.scan is not None:
        totals = window.scan.counts.by_label
    else:
        label_rows = (
            window_decisions(agent=agent, window=window)
            .filter(response_action__isnull=False)
            .annotate(label=label_expression(actions))
            .values("label")
            .annotate(n=Count("seq"))
            .order_by()
        )
        totals = {str(row["label"]): int(row["n"]) for row in label_rows}
    steps = {label: -(-totals[label] // limit) for label in kinds if totals.get(label)}
    picked: dict[str, list[tuple[Any, ...]]] = {label: [] for label in kinds}
    if steps:
        for row in _sample_rows(agent=agent, window=window, steps=steps, limit=limit):
            picked[str(row[0])].append(row)
    out = {}
    for label in kinds:
        rows = sorted(picked[label], key=lambda r: int(r[1]))  # by (timestamp, seq), as ranked
        out[label] = ClusterRows(
            entry_ids=[r[2] for r in rows],
            confidences=[None if r[3] is None else float(r[3]) for r in rows],
            thresholds=[r[4] for r in rows],
            features=[r[5] or {} for r in rows],
            rules=[list(r[6] or []) if len(r) > 6 else [] for r in rows],
            total=int(totals.get(label, 0)),
        )
    return out


def rolled_back_thresholds(*, agent: Agent, since: datetime | None, now: datetime) -> set[str]:
    """Thresholds whose proposal was rolled back since the previous cycle."""
    qs = Proposal.objects.filter(agent=agent, status=Proposal.Status.ROLLED_BACK)
    if since is not None:
        qs = qs.filter(Q(rolled_back_at__gte=since) | Q(rolled_back_at__isnull=True, decided_at__gte=since))
    return set(qs.values_list("threshold_name", flat=True))


def previous_run(*, agent: Agent, cycle: date) -> TunerRun | None:
    return TunerRun.objects.filter(agent=agent, cycle__lt=cycle).order_by("-cycle").first()


def tuner_runs_list(*, agent: Agent) -> QuerySet[TunerRun]:
    return TunerRun.objects.filter(agent=agent).select_related("requested_by").order_by("-cycle", "-created_at")


# ------------------------------------------------------------------------------------ changes and the reference

CHANGE_SOURCES = (ConfigVersion.Source.PROPOSAL, ConfigVersion.Source.MANUAL)


def first_change(*, agent: Agent, before: datetime) -> ConfigVersion | None:
    """The first accepted change of the agent's config (a proposal accepted or modified, or a manual change)."""
    return (
        ConfigVersion.objects.filter(agent=agent, source__in=CHANGE_SOURCES, activated_at__lt=before)
        .order_by("activated_at", "number")
        .first()
    )


def first_rise_in_window(*, agent: Agent, window: Window) -> datetime | None:
    """When an accepted change first raised a threshold inside the window (for the creep test), or None."""
    versions = list(
        ConfigVersion.objects.filter(agent=agent).order_by("number").only("number", "values", "source", "activated_at")
    )
    for previous, version in zip(versions, versions[1:], strict=False):
        if not window.start <= version.activated_at < window.end or version.source not in CHANGE_SOURCES:
            continue
        if any(float(v) > float(previous.values.get(name, v)) + 1e-12 for name, v in version.values.items()):
            return version.activated_at
    return None


def week_key(*, agent: Agent, at: datetime) -> str:
    """The ISO week of ``at`` in the agent's timezone, as ``WeekStats.week_start`` spells it (its Monday)."""
    local = at.astimezone(zoneinfo.ZoneInfo(agent.timezone or "UTC")).date()
    return (local - timedelta(days=local.weekday())).isoformat()


def values_at(*, agent: Agent, at: datetime) -> dict[str, float]:
    """The threshold values live just before ``at``."""
    version = (
        ConfigVersion.objects.filter(agent=agent, activated_at__lt=at).order_by("-activated_at", "-number").first()
    )
    if version is None:
        version = ConfigVersion.objects.filter(agent=agent).order_by("number").first()
    return {k: float(v) for k, v in (version.values if version is not None else {}).items()}


def miss_reference_get(*, agent: Agent) -> MissReference | None:
    return MissReference.objects.filter(agent=agent).select_related("set_by").first()


def miss_ledger(*, agent: Agent, since: datetime, until: datetime) -> dict[str, float]:
    """Per threshold, the real misses the changes accepted since ``since`` were replayed to add, each as a share of
    the real cases of the window it was measured on. Only material losses count (the risk flag's test: beyond
    what the replay can tell from noise); rolled-back changes no longer count."""
    ledger: dict[str, float] = {}
    accepted = Proposal.objects.filter(
        agent=agent,
        status__in=[Proposal.Status.ACCEPTED, Proposal.Status.MODIFIED],
        decided_at__gte=since,
        decided_at__lt=until,
    ).values_list("threshold_name", "impact")
    for name, impact in accepted:
        misses = (impact or {}).get("misses") or {}
        added, real = misses.get("change"), (impact or {}).get("realCases")
        material = "material" in ((impact or {}).get("riskReasons") or [])
        if material and isinstance(added, int | float) and isinstance(real, int | float) and added > 0 and real > 0:
            ledger[name] = ledger.get(name, 0.0) + float(added) / float(real)
    return ledger


# ------------------------------------------------------------------------------------------------ clusters


def run_clusters(*, run: TunerRun) -> list[dict[str, Any]]:
    """A run's stored clusters in the shape ``tuner.services.clusters_find`` returns, largest first."""
    return [cluster_as_dict(c) for c in Cluster.objects.filter(run=run).order_by("-size", "kind", "pk")]


def latest_done_run(*, agent: Agent) -> TunerRun | None:
    return TunerRun.objects.filter(agent=agent, status=TunerRun.Status.DONE).order_by("-cycle", "-created_at").first()


@dataclass
class ClusterTrends:
    """The latest done cycle's clusters, each with its trend against the done cycle before (tuner.clusters)."""

    run: TunerRun | None
    previous: TunerRun | None
    clusters: list[dict[str, Any]]
    gone: list[dict[str, Any]]


def cluster_trends_latest(*, agent: Agent) -> ClusterTrends:
    run = latest_done_run(agent=agent)
    if run is None:
        return ClusterTrends(run=None, previous=None, clusters=[], gone=[])
    previous = (
        TunerRun.objects.filter(agent=agent, status=TunerRun.Status.DONE, cycle__lt=run.cycle)
        .order_by("-cycle", "-created_at")
        .first()
    )
    before = run_clusters(run=previous) if previous is not None else []
    clusters, gone = cluster_trends(run_clusters(run=run), before)
    for c in [*clusters, *gone]:
        c["sentence"] = cluster_sentence(c)
    return ClusterTrends(run=run, previous=previous, clusters=clusters, gone=gone)
