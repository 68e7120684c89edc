"""Queue-page benchmark (not a test): server time of the review queue against the bare SQL it runs.

    DATABASE_URL=postgres://USER@127.0.0.1:5432/DB REDIS_URL=redis://127.0.0.1:6379/N \\
        .venv/bin/python benchmarks/queue_page.py [--decisions 1000000] [--pending 100000] [--runs 30] [--reload]

1. Migrates the database, registers 5 agents (``bq-0`` .. ``bq-4``) and, unless their decisions are there already
   (``--reload`` replaces them), loads ``--decisions`` decisions with one ``INSERT ... SELECT generate_series``:
   spread over the last 10 weeks, 40 % fired (queued), of which ``--pending`` still have no response; the rest
   are answered. Then ``VACUUM ANALYZE``.
2. Times ``GET /queue/`` through Django's test ``Client`` (middleware, view, selectors, template: the whole
   server side, no network) at the first page, at a deep page (keyset cursor 90 % into the pending items), and
   both again filtered by one agent; ``--runs`` times each, median and p95.
3. Captures the SQL of the page's list query and runs it bare on a cursor, in turn with the page (a request, then
   the bare query, ``--runs`` times: both see the same load), and prints both side by side, with the plan's index
   from ``EXPLAIN (ANALYZE, BUFFERS)``.
4. Times the header figures, which the page loads in their own request (``GET /queue/stats/``), with the
   cache emptied before each run (cold) and kept (warm).

Targets: the page under 100 ms at the first and the deep page, and at most 4 times its list query (the ratio
column: median page time over median bare-query time, measured in the same run).
"""

import sys
from pathlib import Path

# Run as a script: the project root, not benchmarks/, goes first on sys.path so the project's apps import.
ROOT = Path(__file__).resolve().parent.parent
sys.path[:1] = [str(ROOT)]

import argparse  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from datetime import timedelta  # noqa: E402
from typing import Any  # noqa: E402

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "loopsite.settings")

AGENTS = [f"bq-{i}" for i in range(5)]
RATIO_TARGET = 4.0  # the page's server time against its own list query, run bare (issue 14)
WEEKS = 10


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decisions", type=int, default=1_000_000)
    parser.add_argument("--pending", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--reload", action="store_true", help="delete and reload the benchmark's decisions")
    args = parser.parse_args()
    queued = args.decisions * 4 // 10
    if not 0 < args.pending <= queued:
        parser.error(f"--pending must be 1..{queued} (40 % of --decisions are queued)")
    return args


def setup_data(args: argparse.Namespace) -> None:
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from auditlog.models import Decision
    from thresholds.models import Agent, ConfigVersion
    from thresholds.services import agent_create

    call_command("migrate", verbosity=0)
    now = timezone.now()
    for agent_id in AGENTS:
        if not Agent.objects.filter(agent_id=agent_id).exists():
            agent_create(
                agent_id=agent_id,
                actions=["auto-resolve", "flag", "escalate"],
                thresholds=[
                    {"name": "flag_threshold", "value": 0.6, "action": "flag"},
                    {"name": "escalate_threshold", "value": 0.85, "action": "escalate"},
                ],
                now=now,
            )
    agents = list(Agent.objects.filter(agent_id__in=AGENTS).order_by("agent_id"))
    existing = Decision.objects.filter(agent__in=agents).count()
    if existing == args.decisions and not args.reload:
        print(f"data: {existing:,} decisions of the benchmark agents already loaded")
        return
    agent_pks = [a.pk for a in agents]
    version_pks = [ConfigVersion.objects.get(agent=a, is_live=True).pk for a in agents]
    queued = args.decisions * 4 // 10
    # Every k-th queued decision stays pending, so pending items are spread over the whole 10 weeks.
    every = queued / args.pending
    started = time.perf_counter()
    with connection.cursor() as cur:
        cur.execute("DELETE FROM auditlog_decision WHERE agent_id = ANY(%s)", [agent_pks])
        cur.execute("SELECT setseed(0.42)")  # the same data every load
        cur.execute("SET statement_timeout = 0")  # the load can outlast the web's limit on a busy machine
        cur.execute(
            """
            INSERT INTO auditlog_decision (
                entry_id, agent_id, session_id, "timestamp", received_at, action, confidence, threshold_used,
                threshold_name, reasoning, input_hash, features, matched_rules, config_version_id, review_reason,
                queued, content_hash, response_action, responded_at, responder_id, time_to_respond, response_source)
            SELECT
                'bq-' || g,
                (%(agents)s::bigint[])[1 + ai],
                's-' || (g / 50),
                ts,
                ts,
                act,
                conf,
                CASE act WHEN 'escalate' THEN 0.85 ELSE 0.6 END,
                CASE act WHEN 'escalate' THEN 'escalate_threshold' ELSE 'flag_threshold' END,
                'benchmark decision ' || g,
                md5(g::text),
                jsonb_build_object('amount_z', round((random() * 6 - 1)::numeric, 3),
                                   'velocity_1h', round((random() * 4)::numeric, 3),
                                   'night', (g %% 2)::float),
                CASE WHEN g %% 3 = 0 THEN '["high_amount", "new_device"]'::jsonb ELSE '["velocity_spike"]'::jsonb END,
                (%(versions)s::bigint[])[1 + ai],
                CASE WHEN fired THEN 'fired' ELSE 'none' END,
                fired,
                md5('c' || g),
                CASE WHEN answered THEN (ARRAY['approve','dismiss','escalate','approve'])[1 + g %% 4] END,
                CASE WHEN answered THEN ts + interval '3 hours' END,
                CASE WHEN answered THEN 'bench-reviewer-' || (g %% 7) END,
                CASE WHEN answered THEN 10800.0 END,
                CASE WHEN answered THEN 'web' END
            FROM (
                SELECT g, ai, ts, act, conf, fired,
                       fired AND floor((qn - 1) / %(every)s) = floor(qn / %(every)s) AS answered
                FROM (
                    SELECT g, ai, ts, act, conf, act <> 'auto-resolve' AS fired,
                           sum(CASE WHEN act <> 'auto-resolve' THEN 1 ELSE 0 END) OVER (ORDER BY g) AS qn
                    FROM (
                        SELECT g, floor(random() * 5)::int AS ai,
                               %(start)s::timestamptz + (g * %(step)s::float) * interval '1 second' AS ts,
                               CASE WHEN r < 0.6 THEN 'auto-resolve'
                                    WHEN r < 0.9 THEN 'flag' ELSE 'escalate' END AS act,
                               round(random()::numeric, 4)::float AS conf
                        FROM (
                            -- a low-discrepancy sequence: exactly 40 %% fired, with no period to line up with
                            SELECT g, (g * 0.6180339887498949) - floor(g * 0.6180339887498949) AS r
                            FROM generate_series(1, %(n)s) AS g
                        ) draws
                    ) base
                ) numbered
            ) rows
            """,
            {
                "agents": agent_pks,
                "versions": version_pks,
                "every": every,
                "start": now - timedelta(weeks=WEEKS),
                "step": WEEKS * 7 * 86400 / args.decisions,
                "n": args.decisions,
            },
        )
    with connection.cursor() as cur:
        cur.execute("VACUUM ANALYZE auditlog_decision")
    pending = Decision.objects.filter(agent__in=agents, queued=True, response_action__isnull=True).count()
    queued = Decision.objects.filter(agent__in=agents, queued=True).count()
    print(
        f"data: loaded {args.decisions:,} decisions ({queued:,} queued, {pending:,} pending) "
        f"in {time.perf_counter() - started:.1f} s"
    )


def timed(fn: Callable[[], Any], runs: int) -> list[float]:
    fn()  # warm: connection, template cache
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def timed_in_turn(first: Callable[[], Any], second: Callable[[], Any], runs: int) -> tuple[list[float], list[float]]:
    """``timed`` for two functions run one after the other in each round, so that both see the same load: on a
    machine shared with other work, two blocks timed one after the other can see different loads, and their
    ratio moves with it."""
    first()
    second()
    out: tuple[list[float], list[float]] = ([], [])
    for _ in range(runs):
        for fn, times in ((first, out[0]), (second, out[1])):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1000)
    return out


def summary(ms: list[float]) -> str:
    ordered = sorted(ms)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return f"{statistics.median(ms):7.1f} ms  (p95 {p95:6.1f})"


def main() -> None:
    args = parse_args()
    import django

    django.setup()
    from django.conf import settings

    if not settings.IS_POSTGRES:
        sys.exit("benchmarks/queue_page.py needs PostgreSQL: set DATABASE_URL=postgres://...")
    from django.core.cache import cache
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from auditlog.models import Decision
    from auditlog.selectors import Cursor, queue_stats
    from tests.factories import user_with_role

    setup_data(args)
    reviewer = user_with_role("reviewer", username="bench-queue-reviewer")
    client = Client()
    client.force_login(reviewer)

    pending = Decision.objects.filter(queued=True, response_action__isnull=True).order_by("timestamp", "seq")
    total_pending = pending.count()
    bq1 = pending.filter(agent__agent_id="bq-1")

    def deep_in(rows: Any, count: int) -> tuple[str, str]:
        """The cursor 90 % into ``rows`` (as the page's own links encode it) and the entry id the page after it
        starts with, so the timed request is checked to be that deep page and not the first one."""
        at = int(count * 0.9)
        timestamp, seq = rows.values_list("timestamp", "seq")[at]
        return Cursor(timestamp, seq).encode(), rows.values_list("entry_id", flat=True)[at + 1]

    deep_cursor, deep_first = deep_in(pending, total_pending)
    deep_agent_cursor, deep_agent_first = deep_in(bq1, bq1.count())
    first_first = pending.values_list("entry_id", flat=True)[0]
    first_agent_first = bq1.values_list("entry_id", flat=True)[0]

    pages = [
        ("first page", {}, first_first),
        ("deep page (90 %)", {"after": deep_cursor}, deep_first),
        ("first page, agent filter", {"agent": "bq-1"}, first_agent_first),
        ("deep page, agent filter", {"agent": "bq-1", "after": deep_agent_cursor}, deep_agent_first),
    ]
    print(f"\npending items: {total_pending:,}; decisions in the table: {Decision.objects.count():,}")
    print(f"{args.runs} runs each, median (p95); page = GET /queue/ through the Django test Client\n")
    print(f"{'':28} {'queue page (server)':>28} {'bare list query':>28} {'ratio':>7}   index used")
    ratios: list[float] = []
    for label, params, first in pages:

        def get(params: dict[str, str] = params, first: str = first, label: str = label) -> None:
            response = client.get("/queue/", params, secure=True)  # as over HTTPS: no redirect to it
            assert response.status_code == 200, response.status_code
            assert response.content.count(b'<li class="item') == 25
            assert f':{first}"'.encode() in response.content, f"{label}: the page does not hold {first}"

        get()  # warm: connection, template cache
        with CaptureQueriesContext(connection) as captured:
            get()
        list_sql = next(
            q["sql"] for q in captured.captured_queries if "ORDER BY" in q["sql"] and q["sql"].endswith("LIMIT 26")
        )

        def bare(sql: str = list_sql) -> None:
            with connection.cursor() as cur:
                cur.execute(sql)
                cur.fetchall()

        page_ms, sql_ms = timed_in_turn(get, bare, args.runs)
        with connection.cursor() as cur:
            cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + list_sql)
            plan = [row[0] for row in cur.fetchall()]
        index = next((line.split(" using ")[1].split(" ")[0] for line in plan if " using " in line), "(none)")
        ratio = statistics.median(page_ms) / statistics.median(sql_ms)
        ratios.append(ratio)
        print(f"{label:28} {summary(page_ms):>28} {summary(sql_ms):>28} {ratio:6.1f}x   {index}")
    print(f"\npage / list query (medians): at most {max(ratios):.1f}x; target at most {RATIO_TARGET:g}x")

    now = timezone.now()

    def stats_cold() -> None:
        cache.clear()
        queue_stats(reviewer="bench-reviewer-1", now=now)

    def fragment(cold: bool) -> Callable[[], None]:
        def get() -> None:
            if cold:
                cache.clear()
            assert client.get("/queue/stats/", secure=True).status_code == 200

        return get

    print("\nthe header figures, in their own request (GET /queue/stats/) after the page:")
    print(f"{'header request, cache cold':28} {summary(timed(fragment(True), args.runs)):>28}")
    print(f"{'header request, cache warm':28} {summary(timed(fragment(False), args.runs)):>28}")
    with CaptureQueriesContext(connection) as captured:
        stats_cold()
    print("\nheader queries (cold):")
    for q in captured.captured_queries:
        print(f"  {float(q['time']) * 1000:7.1f} ms  {q['sql'][:150]}")


if __name__ == "__main__":
    main()
