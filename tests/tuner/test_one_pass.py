"""Issue 14, item 4: the tuner reads its window in one aggregate pass.

Every count, histogram and trend of a cycle comes from one ``GROUP BY`` over the window (``window_scan``), the
cluster samples from one more query bounded per kind, and the evidence of a proposal is counted from the scan and
its ids read back from the window's end. These tests hold the scan to the per-question queries it replaced, count
the cycle's reads of the decision table so that a second pass cannot creep back, and show that on PostgreSQL the
reads run in one transaction with the tuner's ``work_mem`` and ``jit``."""

import random
import threading
import zoneinfo
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import numpy as np
import pytest
from django.db import connection
from django.db.models import Count, F, Min, Q
from django.db.models.functions import Floor, TruncWeek
from django.test.utils import CaptureQueriesContext

from auditlog.models import ReviewReason
from tests.factories import NOW, make_agent
from tests.tuner.helpers import log_rows, output, spread
from tests.tuner.test_cycle import flag_too_low_rows
from tests.tuner.test_rule_based import log_rule_rows, rules_agent, two_rules_rows
from thresholds.models import Agent
from thresholds.selectors import threshold_definitions
from tuner import selectors
from tuner.analysis import BINS
from tuner.generators import StatisticalGenerator
from tuner.services import tuner_cycle_run

pytestmark = pytest.mark.django_db

ACTIONS = ["auto-resolve", "flag", "escalate"]
ACTIONS_RULES = ["allow", "review", "block"]
# Confidences on the replay's grid and a float's width either side of one, where a bin and a comparison could part.
EDGES = [0.6, 0.605, 0.61, 0.85, 0.57, 0.29, 0.6 - 1e-16, 0.6000000000000001, 0.85 - 1e-16]


def scored_rows(n: int, *, seed: int = 3, weeks: int = 4) -> list[dict[str, Any]]:
    """A flag threshold set too low (many dismissals just above 0.6), modified responses of every kind, and
    confidences on and around the grid."""
    rnd = random.Random(seed)
    rows = []
    for i, at in enumerate(spread(n, weeks=weeks)):
        c = rnd.choice(EDGES) if rnd.random() < 0.15 else round(rnd.betavariate(2.2, 2.0), rnd.choice([2, 3, 4, 7]))
        real = rnd.random() < 1 / (1 + np.exp(-(c - 0.72) * 14))
        response: str | None = None
        modified = None
        if rnd.random() < 0.85:
            response = ("approve" if real else "dismiss") if c >= 0.6 else ("escalate" if real else "approve")
            if rnd.random() < 0.08:
                response, modified = "modify", rnd.choice(ACTIONS)
        features = {"amount_z": rnd.gauss(1.5 * real, 1), "night": int(rnd.random() < 0.3), "velocity": i % 7}
        rows.append({"confidence": c, "at": at, "response": response, "modified": modified, "features": features})
    return rows


def scored_agent(n: int = 2400, *, tz: str = "America/New_York", **options: Any) -> Agent:
    agent, _ = make_agent(f"scored-{n}", timezone=tz, **options)
    log_rows(agent, scored_rows(n))
    return agent


# ------------------------------------------------------------------- the scan against the queries it replaced


def reference_scan(agent: Agent, window: selectors.Window) -> dict[str, Any]:
    """What the cycle read before the scan, one query per question (the counts, the weeks, the histogram)."""
    qs = selectors.window_decisions(agent=agent, window=window)
    responded = qs.filter(response_action__isnull=False)
    actions = list(agent.actions)
    totals = qs.aggregate(
        n_decisions=Count("seq"),
        n_queued=Count("seq", filter=Q(queued=True)),
        n_responded=Count("seq", filter=Q(response_action__isnull=False)),
        n_queued_responded=Count("seq", filter=Q(queued=True, response_action__isnull=False)),
        first=Min("timestamp", filter=Q(response_action__isnull=False)),
    )
    by_threshold: dict[str, dict[str, int]] = {}
    for pair in responded.values("threshold_name", "response_action").annotate(n=Count("seq")).order_by():
        by_threshold.setdefault(pair["threshold_name"], {})[str(pair["response_action"])] = pair["n"]
    labels = responded.annotate(label=selectors.label_expression(actions)).values("label").annotate(n=Count("seq"))
    tz = zoneinfo.ZoneInfo(agent.timezone)
    weeks: dict[str, dict[str, Any]] = {}
    for week in (
        qs.annotate(week=TruncWeek("timestamp", tzinfo=tz))
        .values("week")
        .annotate(
            n_decisions=Count("seq"),
            n_queued=Count("seq", filter=Q(queued=True)),
            n_responses=Count("seq", filter=Q(response_action__isnull=False)),
            n_dismiss=Count("seq", filter=Q(response_action="dismiss")),
            n_modify=Count("seq", filter=Q(response_action="modify")),
        )
        .order_by("week")
    ):
        values: dict[str, Any] = dict(week)
        weeks[values.pop("week").date().isoformat()] = values
    histogram: dict[tuple[str, str, bool], np.ndarray] = {}
    for cell in (
        responded.annotate(label=selectors.label_expression(actions), bin=Floor(F("confidence") * BINS))
        .values("action", "label", "review_reason", "bin")
        .annotate(n=Count("seq"))
        .order_by()
    ):
        key = (cell["action"], cell["label"], cell["review_reason"] == ReviewReason.SAMPLED)
        histogram.setdefault(key, np.zeros(BINS + 1))[min(BINS, max(0, int(cell["bin"])))] += cell["n"]
    return {
        **totals,
        "by_threshold": by_threshold,
        "by_label": {str(r["label"]): r["n"] for r in labels},
        "weeks": weeks,
        "histogram": histogram,
    }


def test_window_scan__scored_agent__every_count_week_and_bin_as_the_queries_it_replaced() -> None:
    agent = scored_agent()
    window = selectors.cycle_window(agent=agent, now=NOW)
    scan = selectors.window_scan(agent=agent, window=window, definitions=threshold_definitions(agent=agent))
    want = reference_scan(agent, window)
    counts = scan.counts
    assert (counts.decisions, counts.queued, counts.responded, counts.queued_responded) == (
        want["n_decisions"],
        want["n_queued"],
        want["n_responded"],
        want["n_queued_responded"],
    )
    assert counts.first_response_at == want["first"]
    assert counts.by_threshold == want["by_threshold"]
    assert {k: v for k, v in counts.by_label.items() if v} == want["by_label"]
    assert sum(counts.by_response.values()) == counts.responded and counts.by_response["modify"] > 0
    # Weeks in the agent's timezone (New York): five of them touch the four-week window.
    assert [w.week_start for w in counts.weeks] == list(want["weeks"]) and len(counts.weeks) == 5
    for week in counts.weeks:
        expected = want["weeks"][week.week_start]
        assert (week.decisions, week.queued, week.responses, week.dismiss, week.modify) == (
            expected["n_decisions"],
            expected["n_queued"],
            expected["n_responses"],
            expected["n_dismiss"],
            expected["n_modify"],
        )
    # Both thresholds read the one confidence histogram, cell for cell.
    for name in ("flag_threshold", "escalate_threshold"):
        got = scan.histograms.by_threshold[name]
        assert got.keys() == want["histogram"].keys()
        for key, hist in got.items():
            assert np.array_equal(hist, want["histogram"][key]), key
    assert scan.histograms.unscored == {}


def test_window_scan__rule_based_agent__each_threshold_its_own_populations_in_the_same_pass() -> None:
    agent = rules_agent()
    log_rule_rows(agent, two_rules_rows())
    definitions = threshold_definitions(agent=agent)
    window = selectors.cycle_window(agent=agent, now=NOW)
    with CaptureQueriesContext(connection) as queries:
        scan = selectors.window_scan(agent=agent, window=window, definitions=definitions)
    assert len(window_reads(queries)) == 1
    responded = selectors.window_decisions(agent=agent, window=window).filter(response_action__isnull=False)
    for name, definition in sorted(definitions.items()):
        populations = selectors.rule_populations(agent=agent, definition=definition, definitions=definitions)
        if populations is None:
            assert name not in scan.histograms.by_threshold
            continue
        rows = (
            responded.filter(populations.gated | populations.below)
            .annotate(label=selectors.label_expression(ACTIONS_RULES), bin=Floor(populations.score * BINS))
            .values("action", "label", "review_reason", "bin")
            .annotate(n=Count("seq"))
            .order_by()
        )
        want: dict[tuple[str, str, bool], np.ndarray] = {}
        for row in rows:
            key = (row["action"], row["label"], row["review_reason"] == ReviewReason.SAMPLED)
            want.setdefault(key, np.zeros(BINS + 1))[min(BINS, max(0, int(row["bin"])))] += row["n"]
        got = scan.histograms.by_threshold[name]
        assert got.keys() == want.keys(), name
        assert all(np.array_equal(got[key], want[key]) for key in want), name
    assert scan.counts.responded == responded.count()


@pytest.mark.parametrize(
    "tz, monday",
    [
        ("America/New_York", "2025-03-10"),  # clocks forward the Sunday before, at 2:00
        ("America/New_York", "2025-11-03"),  # and back
        ("America/Havana", "2025-03-10"),  # forward at midnight: the Sunday has no 0:00
        ("Australia/Lord_Howe", "2025-04-07"),  # back by half an hour
        ("Asia/Kathmandu", "2025-03-03"),  # +5:45
        ("UTC", "2025-03-03"),
    ],
)
def test_week_number__the_week_truncweek_gives__around_monday_midnight_and_daylight_saving(
    tz: str, monday: str
) -> None:
    """The scan numbers a decision's week by comparing its timestamp with each local Monday's midnight; every
    15 minutes from the Saturday to the Tuesday around a Monday, that is the week the database's ``TruncWeek``
    in the agent's timezone gives."""
    zone = zoneinfo.ZoneInfo(tz)
    agent, _ = make_agent(f"weeks-{tz.replace('/', '-')}-{monday}", timezone=tz)
    first = datetime.combine(date.fromisoformat(monday) - timedelta(days=2), time.min, tzinfo=UTC)
    at = [first + timedelta(minutes=15 * i) for i in range(4 * 24 * 4)]
    log_rows(agent, [{"confidence": 0.5, "at": t, "response": None} for t in at])
    window = selectors.Window(cycle=date.fromisoformat(monday), start=at[0], end=at[-1] + timedelta(seconds=1))
    starts = selectors.week_starts(window=window, tz=zone)
    rows = (
        selectors.window_decisions(agent=agent, window=window)
        .annotate(number=selectors.week_number(starts), week=TruncWeek("timestamp", tzinfo=zone))
        .values_list("timestamp", "number", "week")
    )
    got = {t: (starts[n].date(), week.date()) for t, n, week in rows}
    assert len(got) == len(at)
    assert [t for t, (mine, theirs) in got.items() if mine != theirs] == []
    assert {mine for mine, _ in got.values()} == {
        date.fromisoformat(monday) - timedelta(days=7),
        date.fromisoformat(monday),
    }


# ------------------------------------------------------------------------------------------------ evidence


BANDS = [(0.6, 0.605), (0.6, 0.7), (0.55, 0.6), (0.85, 0.9), (0.8, 0.85), (0.29, 0.57), (0.0, 1.0), (0.6234, 0.7)]


def test_evidence_entries__counted_from_the_scan__same_count_and_ids_as_the_database() -> None:
    agent = scored_agent()
    definitions = threshold_definitions(agent=agent)
    plain = selectors.cycle_window(agent=agent, now=NOW)
    scanned = selectors.window_scan(agent=agent, window=plain, definitions=definitions).window
    for name, definition in sorted(definitions.items()):
        for kind in ("dismiss", "escalate"):
            for low, high in BANDS:
                args: dict[str, Any] = dict(
                    agent=agent, definition=definition, kind=kind, low=low, high=high, limit=10, definitions=definitions
                )
                want = selectors.evidence_entries(window=plain, **args)
                with CaptureQueriesContext(connection) as queries:
                    got = selectors.evidence_entries(window=scanned, **args)
                assert got == want, (name, kind, low, high)
                counted = [q for q in window_reads(queries) if "COUNT(" in q.upper()]
                # On the grid the scan answers; 0.6234 is off it, so the database counts.
                assert len(counted) == (1 if 0.6234 in (low, high) else 0), (low, high)


def test_evidence_entries__rule_based_agent__scan_counts_only_the_threshold_s_own_hits() -> None:
    agent = rules_agent()
    log_rule_rows(agent, two_rules_rows())
    definitions = threshold_definitions(agent=agent)
    plain = selectors.cycle_window(agent=agent, now=NOW)
    scanned = selectors.window_scan(agent=agent, window=plain, definitions=definitions).window
    for name, definition in sorted(definitions.items()):
        for kind in ("dismiss", "escalate"):
            for low, high in [(0.4, 0.48), (0.62, 0.744), (0.3, 0.4), (0.0, 1.0), (0.86, 0.9)]:
                args: dict[str, Any] = dict(
                    agent=agent, definition=definition, kind=kind, low=low, high=high, limit=5, definitions=definitions
                )
                assert selectors.evidence_entries(window=scanned, **args) == selectors.evidence_entries(
                    window=plain, **args
                ), (name, kind, low, high)


def test_latest_ids__the_band_s_decisions_all_early_in_the_window__widened_until_found() -> None:
    """The first span read back from the window's end assumes the band's decisions are spread evenly; here they
    all lie in its first days, so the look-up widens and still returns the latest of them."""
    agent, _ = make_agent("early", timezone="UTC")
    start = NOW - timedelta(weeks=4) + timedelta(hours=1)
    rows = [
        {"confidence": 0.62, "at": start + timedelta(minutes=i), "response": "dismiss", "id": f"early-{i}"}
        for i in range(60)
    ]
    rows += [
        {"confidence": 0.9, "at": at, "response": "approve", "id": f"late-{i}"} for i, at in enumerate(spread(300))
    ]
    log_rows(agent, rows)
    definitions = threshold_definitions(agent=agent)
    plain = selectors.cycle_window(agent=agent, now=NOW)
    scanned = selectors.window_scan(agent=agent, window=plain, definitions=definitions).window
    args: dict[str, Any] = dict(
        agent=agent, definition=definitions["flag_threshold"], kind="dismiss", low=0.6, high=0.65, limit=3
    )
    count, ids = selectors.evidence_entries(window=scanned, **args)
    assert (count, ids) == (60, ["early-59", "early-58", "early-57"])
    assert selectors.evidence_entries(window=plain, **args) == (count, ids)


# ------------------------------------------------------------------------------------------------ the samples


def reference_samples(agent: Agent, window: selectors.Window, *, limit: int) -> dict[str, list[tuple[Any, ...]]]:
    """``cluster_samples`` read the plain way: every responded decision of the window in Python, each label's rows
    oldest first (by timestamp, then seq), every k-th by seq (k = ceil(total / limit)), the first ``limit`` kept."""
    actions = list(agent.actions)
    rows: dict[str, list[Any]] = {}
    for d in selectors.window_decisions(agent=agent, window=window).filter(response_action__isnull=False):
        label = selectors.label_of(actions, d.response_action, d.action, d.modified_action)
        rows.setdefault(str(label), []).append(d)
    out = {}
    for label in selectors.LABELS:
        mine = sorted(rows.get(label, []), key=lambda d: (d.timestamp, d.seq))
        step = -(-len(mine) // limit) if mine else 1
        kept = [d for d in mine if d.seq % step == 0][:limit]
        out[label] = [
            (d.entry_id, d.confidence, d.threshold_name, d.features, d.matched_rules if agent.rule_based else [])
            for d in kept
        ]
    return out


def got_samples(samples: dict[str, selectors.ClusterRows]) -> dict[str, list[tuple[Any, ...]]]:
    return {
        label: list(zip(s.entry_ids, s.confidences, s.thresholds, s.features, s.rules, strict=True))
        for label, s in samples.items()
    }


@pytest.mark.parametrize("limit", [7, 40, 5000])
def test_cluster_samples__every_k_th_of_each_label_oldest_first__as_read_the_plain_way(limit: int) -> None:
    """Modified responses count by the action they moved to; 5000 is more than any label has (all of them)."""
    agent = scored_agent()
    window = selectors.cycle_window(agent=agent, now=NOW)
    scanned = selectors.window_scan(agent=agent, window=window, definitions=threshold_definitions(agent=agent)).window
    want = reference_samples(agent, window, limit=limit)
    assert all(want.values())
    assert got_samples(selectors.cluster_samples(agent=agent, window=scanned, limit=limit)) == want
    assert got_samples(selectors.cluster_samples(agent=agent, window=window, limit=limit)) == want


def test_cluster_samples__rule_based_agent__with_the_matched_rules() -> None:
    agent = rules_agent()
    log_rule_rows(agent, two_rules_rows())
    window = selectors.cycle_window(agent=agent, now=NOW)
    want = reference_samples(agent, window, limit=30)
    assert any(rules for rows in want.values() for *_, rules in rows)
    assert got_samples(selectors.cluster_samples(agent=agent, window=window, limit=30)) == want


@pytest.mark.configured  # the plan is PostgreSQL's; SQLite has no index-only scan to ask for
def test_cluster_samples__postgresql__the_pick_reads_the_responded_index_alone() -> None:
    """At 20M decisions the samples' query was a second read of the whole window, a pass's worth of time
    (docs/bench-tuner.md). Its pick now reads only the columns ``decision_agent_responded`` holds, so PostgreSQL
    can answer it with an index-only scan of the responded decisions; the table is read for the kept rows only,
    by primary key. With scans of the table's rows made costly, the plan shows that no column outside the index
    is read for the pick: it failed while the query read the rows' features in the same scan."""
    agent = scored_agent()
    window = selectors.cycle_window(agent=agent, now=NOW)
    with CaptureQueriesContext(connection) as queries:
        selectors.cluster_samples(agent=agent, window=window, limit=40)
    sample_sql = [q["sql"] for q in queries.captured_queries if "ROW_NUMBER" in q["sql"].upper()]
    assert len(sample_sql) == 1, sample_sql
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_bitmapscan = off")
        cursor.execute("EXPLAIN " + sample_sql[0])
        plan = "\n".join(row[0] for row in cursor.fetchall())
        # The index's copy on each weekly partition (and the default one) has a name of its own.
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'decision_agent_responded'"
        )
        copies = {row[0] for row in cursor.fetchall()}
    scans = [line.strip() for line in plan.splitlines() if " Scan " in line and "_pkey " not in line]
    assert scans and all(
        line.split(" on ")[0].removeprefix("->  ").removeprefix("Index Only Scan using ") in copies for line in scans
    ), plan


# ------------------------------------------------------------------------------------------------ the cycle


def window_reads(queries: CaptureQueriesContext) -> list[str]:
    """The statements that read the decision table over a time range: the window (or a span of it)."""
    return [
        q["sql"]
        for q in queries.captured_queries
        if '"auditlog_decision"' in q["sql"] and '"auditlog_decision"."timestamp" >=' in q["sql"]
    ]


def test_cycle__one_aggregate_pass_one_sample_query_and_bounded_evidence_look_ups() -> None:
    agent, _ = make_agent("too-low")
    log_rows(agent, flag_too_low_rows(1200))
    with CaptureQueriesContext(connection) as queries:
        run = tuner_cycle_run(agent=agent, now=NOW, generator=StatisticalGenerator())
    proposals = output(run)["proposals"]
    assert proposals, (run.output, run.notes)
    reads = window_reads(queries)
    aggregates = [sql for sql in reads if "GROUP BY" in sql.upper()]
    samples = [sql for sql in reads if "ROW_NUMBER" in sql.upper()]
    look_ups = [sql for sql in reads if sql not in aggregates and sql not in samples]
    assert len(aggregates) == 1, aggregates
    assert len(samples) == 1, samples
    # Each proposal's evidence: its count from the scan, its ids from the window's end, LIMIT-bounded.
    assert not [sql for sql in look_ups if "COUNT(" in sql.upper()]
    assert all("LIMIT" in sql.upper() for sql in look_ups)
    assert len(proposals) <= len(look_ups) <= 2 * len(proposals), look_ups
    assert all(p["evidenceCount"] >= 5 for p in proposals)


def test_cycle__no_response_yet__one_pass_and_no_sample_query() -> None:
    agent, _ = make_agent("quiet")
    log_rows(agent, [{"confidence": 0.7, "at": at, "response": None} for at in spread(50)])
    with CaptureQueriesContext(connection) as queries:
        run = tuner_cycle_run(agent=agent, now=NOW, generator=StatisticalGenerator())
    assert run.stats["decisions"] == 50 and run.stats["responded"] == 0
    assert len(window_reads(queries)) == 1


@pytest.mark.configured  # SET LOCAL is PostgreSQL's; SQLite runs the reads outside any transaction
@pytest.mark.django_db(transaction=True)
def test_cycle__postgresql__window_read_in_one_snapshot_with_the_tuner_s_work_mem_and_jit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The scan on the cycle's connection, the samples beside it on a second one (``tuner.beside``): both in
    transactions with the tuner's settings, and in one snapshot."""
    agent = scored_agent(600, tz="UTC")
    seen: list[tuple[Any, ...]] = []

    def spy(function: Any) -> Any:
        def wrapped(**kwargs: Any) -> Any:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT current_setting('work_mem'), current_setting('jit'), current_setting('enable_sort'), "
                    "current_setting('parallel_tuple_cost') || '/' "
                    "|| current_setting('max_parallel_workers_per_gather'), "
                    "pg_current_snapshot()::text, pg_backend_pid()"
                )
                seen.append((function.__name__, *cursor.fetchone(), connection.in_atomic_block))
            return function(**kwargs)

        return wrapped

    monkeypatch.setattr(selectors, "window_scan", spy(selectors.window_scan))
    monkeypatch.setattr(selectors, "cluster_samples", spy(selectors.cluster_samples))
    settings = "SELECT current_setting('work_mem'), current_setting('jit'), current_setting('enable_sort')"
    with connection.cursor() as cursor:
        cursor.execute(settings)
        before = cursor.fetchone()
    assert before != (selectors.TUNER_WORK_MEM, "off", "off")  # the server's own (PostgreSQL's defaults: 4MB, on, on)
    run = tuner_cycle_run(agent=agent, now=NOW, generator=StatisticalGenerator())
    assert run.status == run.Status.DONE
    assert [s[0] for s in seen] == ["window_scan", "cluster_samples"]
    for _, work_mem, jit, enable_sort, parallel, _, _, atomic in seen:
        assert (work_mem, jit, enable_sort, parallel, atomic) == (selectors.TUNER_WORK_MEM, "off", "off", "0/1", True)
    # One snapshot, read by two connections.
    assert seen[0][5] == seen[1][5] and seen[0][6] != seen[1][6]
    # SET LOCAL ended with it: the connection is back to its own settings.
    with connection.cursor() as cursor:
        cursor.execute(settings)
        assert cursor.fetchone() == before


def test_beta_ppf__the_bootstrap_s_shortcut_agrees_with_scipy_s_beta_ppf_bit_for_bit() -> None:
    """tuner.analysis calls the function beta.ppf evaluates, without its argument checks: only for a quantile in
    (0, 1) and shapes above 0, where the numbers must be the same to the last bit, or the proposals would move."""
    from scipy.stats import beta

    from tuner.analysis import beta_ppf

    rng = np.random.default_rng(14)
    x = np.concatenate([np.arange(1, 60), rng.integers(1, 5000, 300)]).astype(float)
    n = x + np.concatenate([np.arange(0, 59), rng.integers(0, 200_000, 300)]).astype(float)
    for q in (0.05, 0.2, 0.95):
        assert np.array_equal(beta_ppf(q, x, n - x + 1), beta.ppf(q, x, n - x + 1))
        assert np.array_equal(beta_ppf(q, x + 1, n - x + 1), beta.ppf(q, x + 1, n - x + 1))
        shapes = zip(x[:40], n[:40] - x[:40] + 1, strict=True)
        assert all(float(beta_ppf(q, a, b)) == float(beta.ppf(q, a, b)) for a, b in shapes)


@pytest.mark.configured  # the second connection is PostgreSQL's; SQLite reads the samples inline
@pytest.mark.django_db(transaction=True)
def test_cycle__postgresql__a_dismissal_committed_after_the_scan__not_in_the_samples_read_beside(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The samples are read on a second connection while the cycle goes on; they must see the rows the scan saw
    (their every-k-th pick is scaled by the scan's totals), not a dismissal committed in between."""
    from django.db import connections

    agent = scored_agent(600, tz="UTC")
    late = "late-dismissal"
    read: dict[str, Any] = {}

    def commit_a_dismissal() -> None:
        try:
            log_rows(agent, [{"id": late, "confidence": 0.62, "at": NOW - timedelta(days=2), "response": "dismiss"}])
        finally:
            connections.close_all()

    def scan_then_commit(**kwargs: Any) -> Any:
        scan = real_scan(**kwargs)
        worker = threading.Thread(target=commit_a_dismissal)  # another connection, committed at once
        worker.start()
        worker.join()
        return scan

    def samples_spy(**kwargs: Any) -> Any:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            read["pid"] = cursor.fetchone()[0]
        read["rows"] = real_samples(**kwargs)
        return read["rows"]

    real_scan, real_samples = selectors.window_scan, selectors.cluster_samples
    monkeypatch.setattr(selectors, "window_scan", scan_then_commit)
    monkeypatch.setattr(selectors, "cluster_samples", samples_spy)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        own_pid = cursor.fetchone()[0]
    run = tuner_cycle_run(agent=agent, now=NOW, generator=StatisticalGenerator())

    assert run.status == run.Status.DONE
    assert read["pid"] != own_pid  # read beside, on a connection of its own
    dismissals = read["rows"]["dismiss"]
    assert dismissals.total == len(dismissals.entry_ids) > 0  # fewer than the limit: every dismissal is there
    assert late not in dismissals.entry_ids
    assert agent.decisions.filter(entry_id=late).exists()  # it was committed, and a later cycle sees it


def test_cycle__inside_a_transaction__samples_read_on_the_cycle_s_own_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A second connection cannot see an open transaction's rows: inside one (here the test's), the samples are
    read inline, and the cycle still finds them."""
    agent = scored_agent(600, tz="UTC")
    pids: list[int] = []
    real_samples = selectors.cluster_samples

    def samples_spy(**kwargs: Any) -> Any:
        pids.append(id(connection.connection))
        return real_samples(**kwargs)

    monkeypatch.setattr(selectors, "cluster_samples", samples_spy)
    run = tuner_cycle_run(agent=agent, now=NOW, generator=StatisticalGenerator())
    assert pids == [id(connection.connection)]
    assert run.stats["labels"]["dismiss"] > 0 and run.clusters.exists()
