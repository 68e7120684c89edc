"""A month at scale (not a test): four weeks of decisions loaded through the ingest path into the partitioned
decision log, then a tuner cycle, the queue page and the dashboard timed, each beside its reference.

    DATABASE_URL=postgres://USER@127.0.0.1:5432/DB .venv/bin/python benchmarks/month.py [--decisions 20000000]

1. Makes a database of its own beside DATABASE_URL's (``<name>_month``), migrates it (the decision log is
   partitioned by week) and registers one agent.
2. Loads ``--decisions`` decisions spread over the 4 weeks before now, in time order, through
   ``decision_log_batch`` (the batch API's service: parsing, checks, the registry, COPY into the partitioned table),
   1,000 a call, with time-ordered (UUIDv7) ids as the agent client makes them. 40 % fire an action and are
   queued; 90 % of queued ones come with a reviewer's response (flags under 0.7 mostly dismissed), the rest wait
   in the queue. Reference: raw ``COPY`` of the same rows (rows built first) into a scratch copy of the table, over
   the first ``--copy-sample`` rows. Prints entries/s for both and their ratio.
3. ``VACUUM ANALYZE``, then times a statistical tuner cycle against one aggregate pass over the same window
   (``count``, sums and a confidence histogram in one ``GROUP BY``), the queue page (``GET /queue/``, the whole server
   side through Django's test client) against its list query bare, and the agent's dashboard against one aggregate
   pass over its weeks. Medians of ``--runs``.
4. Prints the sizes of the table, the registry and every index (summed over the partitions), and the process's
   peak memory.

The database is dropped at the end (``--keep`` keeps it). Everything runs on this machine.
"""

import sys
from pathlib import Path

# Run as a script: the project root, not benchmarks/, goes first on sys.path so the project's apps import.
ROOT = Path(__file__).resolve().parent.parent
sys.path[:1] = [str(ROOT)]

import argparse  # noqa: E402
import io  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from typing import Any  # noqa: E402
from urllib.parse import urlsplit, urlunsplit  # noqa: E402

import numpy as np  # noqa: E402
import psycopg  # noqa: E402

AGENT = "month"
CHUNK = 1000


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decisions", type=int, default=20_000_000, help="decisions in the four weeks")
    parser.add_argument("--copy-sample", type=int, default=500_000, help="rows COPY is timed on (the reference)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each page and query (median)")
    parser.add_argument("--keep", action="store_true", help="keep the database at the end")
    args = parser.parse_args()
    if args.decisions < 10_000 or args.copy_sample < 1000 or args.runs < 1:
        parser.error("--decisions >= 10000, --copy-sample >= 1000 and --runs >= 1")
    return args


def own_database(url: str) -> tuple[str, str]:
    """(the admin URL, the benchmark's URL): a database named after DATABASE_URL's, with ``_month``."""
    parts = urlsplit(url)
    name = parts.path.lstrip("/") + "_month"
    return urlunsplit(parts._replace(path="/postgres")), urlunsplit(parts._replace(path="/" + name))


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def median_ms(fn: Callable[[], Any], runs: int) -> float:
    fn()  # warm
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def entries(n: int, *, start: datetime, span: timedelta, seed: int = 7) -> Iterator[list[dict[str, Any]]]:
    """``n`` entries in time order over [start, start + span), CHUNK at a time, with UUIDv7 ids."""
    from auditlog.entry import uuid7

    rng = np.random.default_rng(seed)
    step = span.total_seconds() / n
    for first in range(0, n, CHUNK):
        size = min(CHUNK, n - first)
        confidence = np.round(rng.beta(2.2, 2.0, size), 4)
        answered = rng.uniform(size=size) < 0.9
        real = rng.uniform(size=size) < 1 / (1 + np.exp(-(confidence - 0.72) * 14))
        amount = np.round(rng.normal(0, 1, size) + real * 1.5, 3)
        night = (rng.uniform(size=size) < 0.3).astype(float)
        chunk = []
        for i in range(size):
            at = start + timedelta(seconds=(first + i) * step)
            c = float(confidence[i])
            action = "escalate" if c >= 0.85 else "flag" if c >= 0.6 else "auto-resolve"
            entry: dict[str, Any] = {
                "id": uuid7(ms=int(at.timestamp() * 1000)),
                "timestamp": at.isoformat(),
                "agentId": AGENT,
                "sessionId": f"s-{(first + i) // 40}",
                "decision": {"action": action, "confidence": c, "thresholdUsed": 0.0, "reasoning": "score"},
                "context": {
                    "inputHash": f"h{first + i}",
                    "features": {"amount_z": float(amount[i]), "night": float(night[i])},
                    "matchedRules": [],
                },
            }
            if action != "auto-resolve" and answered[i]:
                verdict = "approve" if real[i] else "dismiss"
                entry["humanResponse"] = {
                    "action": verdict,
                    "respondedAt": (at + timedelta(minutes=30)).isoformat(),
                    "responderId": "month-reviewer",
                }
            chunk.append(entry)
        yield chunk


def main() -> None:
    args = parse_args()
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        sys.exit("benchmarks/month.py needs PostgreSQL: set DATABASE_URL=postgres://...")
    admin_url, bench_url = own_database(url)
    name = urlsplit(bench_url).path.lstrip("/")
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    os.environ["DATABASE_URL"] = bench_url
    os.environ.setdefault("SECRET_KEY", "benchmark-only")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "loopsite.settings")
    try:
        run(args)
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep:
            with psycopg.connect(admin_url, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            print(f"dropped the database {name}")


def run(args: argparse.Namespace) -> None:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.test import Client
    from django.utils import timezone
    from tqdm import tqdm

    from auditlog.models import Decision
    from auditlog.services import decision_log_batch
    from benchmarks.tuner_timing import timed_cycle
    from tests.factories import make_agent, user_with_role
    from tuner.selectors import cycle_window

    call_command("migrate", verbosity=0)
    now = timezone.now().replace(microsecond=0)
    start = now - timedelta(weeks=4)
    agent, _ = make_agent(AGENT, now=start - timedelta(hours=1))
    print(f"month benchmark: {args.decisions:,} decisions over the 4 weeks before {now:%Y-%m-%d %H:%M} UTC")

    # --- Ingest: through decision_log_batch, against COPY of the same rows --------------------------------------
    logged, ingest_seconds = 0, 0.0
    with tqdm(total=args.decisions, unit="decision", file=sys.stderr, mininterval=5) as bar:
        for chunk in entries(args.decisions, start=start, span=timedelta(weeks=4) - timedelta(minutes=40)):
            begun = time.perf_counter()
            with transaction.atomic():
                results = decision_log_batch(entries=list(chunk), now=now, acting_agent=agent)
            ingest_seconds += time.perf_counter() - begun
            bad = [r.as_dict() for r in results if r.status != "created"]
            if bad:
                sys.exit(f"ingest refused entries: {bad[:3]}")
            logged += len(results)
            bar.update(len(results))
    ingest_rate = logged / ingest_seconds
    copy_rate = copy_reference(connection, args.copy_sample)
    print(
        f"ingest   {ingest_rate:10,.0f} decisions/s through decision_log_batch; raw COPY {copy_rate:10,.0f}/s "
        f"-> {ingest_rate / copy_rate:.0%} of COPY (target >= 60 %)"
    )
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE auditlog_decision")
        cursor.execute("VACUUM ANALYZE auditlog_decisionkey")

    # --- The tuner: one cycle against one aggregate pass over its window ---------------------------------------
    window = cycle_window(agent=agent, now=now)
    aggregate = (
        "SELECT threshold_name, action, review_reason, queued, response_action, "
        "width_bucket(confidence, 0, 1, 50), count(*), sum(confidence) FROM auditlog_decision "
        "WHERE agent_id = %s AND timestamp >= %s AND timestamp < %s GROUP BY 1, 2, 3, 4, 5, 6"
    )

    def one_pass() -> None:
        with connection.cursor() as cursor:
            cursor.execute(aggregate, [agent.pk, window.start, window.end])
            cursor.fetchall()

    pass_ms = median_ms(one_pass, args.runs)
    times, run_ = timed_cycle(agent, now=now)
    cycle_ms, run_s = statistics.median(times) * 1000, times[0]  # the median of three, as the pass
    proposals = len((run_.output or {}).get("proposals", []))
    print(
        f"tuner    cycle {cycle_ms / 1000:8.2f} s, median of {len(times)} (the full run alone {run_s:.2f} s; "
        f"{run_.status}, {proposals} proposal(s)); one aggregate pass {pass_ms / 1000:6.2f} s -> "
        f"{cycle_ms / pass_ms:.2f}x (target <= 3x)"
    )

    # --- The queue page against its list query -----------------------------------------------------------------
    client = Client()
    client.force_login(user_with_role("reviewer", username="month-reviewer-web"))
    list_sql = (
        "SELECT * FROM auditlog_decision WHERE queued AND response_action IS NULL ORDER BY timestamp, seq LIMIT 25"
    )

    def list_query() -> None:
        with connection.cursor() as cursor:
            cursor.execute(list_sql)
            cursor.fetchall()

    def queue_page() -> None:
        response = client.get("/queue/", secure=True)
        assert response.status_code == 200, response.status_code

    list_ms, queue_ms = median_ms(list_query, args.runs), median_ms(queue_page, args.runs)
    print(
        f"queue    page {queue_ms:8.1f} ms; its list query {list_ms:6.1f} ms -> {queue_ms / list_ms:.1f}x "
        "(target <= 4x)"
    )

    # --- The dashboard against one aggregate pass over its weeks -----------------------------------------------
    def dashboard() -> None:
        response = client.get(f"/dashboard/{AGENT}/", secure=True)
        assert response.status_code == 200, response.status_code

    def weeks_pass() -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT date_trunc('week', timestamp), response_action, count(*) FROM auditlog_decision "
                "WHERE agent_id = %s AND timestamp >= %s GROUP BY 1, 2",
                [agent.pk, now - timedelta(weeks=12)],
            )
            cursor.fetchall()

    from django.core.cache import cache

    def dashboard_cold() -> None:
        cache.clear()
        dashboard()

    board_ms, weeks_ms = median_ms(dashboard_cold, args.runs), median_ms(weeks_pass, args.runs)
    print(
        f"dashboard page {board_ms:8.1f} ms (cache emptied each run); one pass over its weeks {weeks_ms:6.1f} ms "
        f"-> {board_ms / weeks_ms:.1f}x"
    )

    # --- Sizes and memory ----------------------------------------------------------------------------------------
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(p.relname, c.relname), sum(pg_relation_size(c.oid)) FROM pg_class c "
            "LEFT JOIN pg_inherits i ON i.inhrelid = c.oid LEFT JOIN pg_class p ON p.oid = i.inhparent "
            "WHERE c.relkind = 'i' AND (c.relname LIKE 'auditlog_decision%%' OR c.relname LIKE 'decision%%' "
            "OR p.relname LIKE 'auditlog_decision%%' OR p.relname LIKE 'decision%%') "
            "GROUP BY 1 ORDER BY 2 DESC"
        )
        indexes = cursor.fetchall()
        cursor.execute(
            "SELECT pg_total_relation_size('auditlog_decisionkey'), "
            "(SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits "
            "WHERE inhparent = 'auditlog_decision'::regclass)"
        )
        registry, table = cursor.fetchone()
    gib = 1024**3
    print(f"sizes    decision log {table / gib:.2f} GiB with indexes; registry {registry / gib:.2f} GiB")
    for index, size in indexes:
        print(f"         index {index:<55} {size / gib:6.2f} GiB")
    print(f"memory   peak RSS {peak_rss_mib():.0f} MiB; {Decision.objects.filter(agent=agent).count():,} decisions")


def copy_reference(connection: Any, n: int) -> float:
    """Rows/s of raw COPY of ``n`` decisions (built first) into scratch copies of the decision table and the id
    registry, with the same columns, defaults and indexes: the two tables the ingest path writes."""
    now = datetime.now(UTC)
    lines = io.StringIO()
    for i in range(n):
        at = (now - timedelta(seconds=i)).isoformat()
        lines.write(
            f"ref-{i}\t1\ts-{i // 40}\t{at}\t{at}\tflag\t0.7\t0\tflag_threshold\tscore\th{i}\t"
            '{"amount_z": 0.5, "night": 0.0}\t[]\t1\tfired\tt\t' + "0" * 64 + "\n"
        )
    data = lines.getvalue().encode()
    key_lines = "".join(f"ref-{i}\t{'0' * 64}\t1\t{now.isoformat()}\n" for i in range(n)).encode()
    columns = (
        "entry_id, agent_id, session_id, timestamp, received_at, action, confidence, threshold_used, "
        "threshold_name, reasoning, input_hash, features, matched_rules, config_version_id, review_reason, queued, "
        "content_hash"
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMPORARY TABLE copy_reference "
            "(LIKE auditlog_decision INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING INDEXES)"
        )
        cursor.execute("CREATE TEMPORARY TABLE copy_reference_key (LIKE auditlog_decisionkey INCLUDING ALL)")
        begun = time.perf_counter()
        with cursor.cursor.copy(f"COPY copy_reference ({columns}) FROM STDIN") as copy:
            copy.write(data)
        with cursor.cursor.copy(
            "COPY copy_reference_key (entry_id, content_hash, agent_id, timestamp) FROM STDIN"
        ) as c:
            c.write(key_lines)
        seconds = time.perf_counter() - begun
        cursor.execute("DROP TABLE copy_reference, copy_reference_key")
    return n / seconds


if __name__ == "__main__":
    main()
