"""Agent client benchmark (not a test): ``log()`` latency, end-to-end rate, and a fault run with server restarts.

    DATABASE_URL=postgres://USER@127.0.0.1:5432/DB .venv/bin/python benchmarks/client.py [--n 50000] [--fault-n 100000]

1. Registers its own agent and starts gunicorn (``--workers``) on a free localhost port, on PostgreSQL.
2. ``log()`` with the server up, for each mode (queued, the default, and ``write_through=True``): ``--n`` entries
   in a tight loop (the worst case: the writer and sender threads compete for the GIL the whole time) and
   ``--paced`` entries at 2,000 a second (an agent's pace); p50/p99/max in microseconds; then ``flush()`` and
   entries per second from the first ``log()`` to the flush's return; and the most entries ever only in memory.
3. ``log()`` with the server down (every entry goes to the spool and stays there): the same percentiles.
4. The fault run: ``--fault-n`` entries logged at an even pace while the server is stopped and started twice, then
   ``flush()``, then a count in the database: every id logged is there once (0 lost, 0 duplicated).

Targets: ``log()`` p99 under 50 us; no fault run loses or duplicates anything. Everything runs on localhost; the
agent, its rows, the spools and the server are removed at the end, also on failure.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:1] = [str(ROOT), str(ROOT / "clients" / "python" / "src")]

import argparse  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from typing import Any  # noqa: E402

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "loopsite.settings")

from benchmarks.ingest import ACTIONS, FEATURES, RULES, free_port, gunicorn, percentile  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=30_000, help="entries logged in a tight loop, server up")
    parser.add_argument("--paced", type=int, default=6_000, help="entries logged at 2,000/s, server up")
    parser.add_argument("--down-n", type=int, default=30_000, help="entries logged with the server down")
    parser.add_argument("--fault-n", type=int, default=100_000, help="entries in the fault run")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    return parser.parse_args()


def make_entry(client: Any, i: int) -> dict[str, Any]:
    """What an agent logs: a decision by the client's rule on the live thresholds, with its context."""
    confidence = ((i * 7919) % 1000) / 1000
    action, name, used = client.decide(confidence)
    return {
        "sessionId": f"session-{i // 50}",
        "decision": {
            "action": action,
            "confidence": confidence,
            "thresholdUsed": used,
            "thresholdName": name,
            "reasoning": "score from amount and velocity; rule set v3 matched",
        },
        "context": {
            "inputHash": f"sha256:{i:016x}",
            "features": {name: float((i * (k + 3)) % 17) / 4 for k, name in enumerate(FEATURES)},
            "matchedRules": RULES[: i % 3],
        },
    }


def timed_logs(client: Any, entries: list[dict[str, Any]], *, rate: float | None = None) -> list[float]:
    """``client.log`` of each entry, timed alone; with ``rate``, spread at that many a second. Microseconds."""
    timings = [0.0] * len(entries)
    clock = time.perf_counter_ns
    start = time.perf_counter()
    for i, entry in enumerate(entries):
        if rate is not None:
            due = start + i / rate
            while (pause := due - time.perf_counter()) > 0:
                time.sleep(pause)
        began = clock()
        client.log(entry)
        timings[i] = (clock() - began) / 1000
    return sorted(timings)


def summary(timings: list[float]) -> str:
    p99 = percentile(timings, 0.99)
    return (
        f"p50 {percentile(timings, 0.50):.1f} us, p99 {p99:.1f} us, max {timings[-1] / 1000:.1f} ms "
        f"(target p99 < 50 us: {'met' if p99 < 50 else 'NOT met'})"
    )


def main() -> None:
    args = parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")):
        raise SystemExit("DATABASE_URL must name a PostgreSQL database (postgres://...)")

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from loopsite_client import Client

    from auditlog.models import Decision, DecisionKey
    from thresholds.models import Agent
    from thresholds.services import agent_create

    call_command("migrate", verbosity=0, interactive=False)
    run = f"cbench{uuid.uuid4().hex[:8]}"
    agent, key = agent_create(
        agent_id=run,
        actions=ACTIONS,
        thresholds=[
            {"name": "flag_threshold", "value": 0.6, "action": "flag"},
            {"name": "escalate_threshold", "value": 0.85, "action": "escalate"},
        ],
        now=datetime.now(UTC),
    )
    connection.close()
    scratch = Path(tempfile.mkdtemp(prefix="client-bench-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    print(
        f"client benchmark: n={args.n} paced={args.paced} down={args.down_n} fault={args.fault_n} "
        f"workers={args.workers} cpus={os.cpu_count()} load={os.getloadavg()[0]:.1f}",
        flush=True,
    )
    try:
        # --- 2. and 3.: each mode, server up then down --------------------------------------------------------
        modes: tuple[tuple[str, dict[str, Any]], ...] = (
            ("queued (default)", {}),
            ("write-through", {"write_through": True}),
        )
        for mode, options in modes:
            spool = scratch / mode.split()[0]
            with gunicorn(port, args.workers), Client(url, key, spool, **options) as client:
                timed_logs(client, [make_entry(client, i) for i in range(2000)])  # warm-up
                assert client.flush(timeout=60), "warm-up not delivered"
                entries = [make_entry(client, i) for i in range(args.n)]
                began = time.perf_counter()
                tight = timed_logs(client, entries)
                logged = time.perf_counter() - began
                assert client.flush(timeout=600), "tight loop not delivered"
                end_to_end = time.perf_counter() - began
                print(f"{mode}: log(), server up, tight loop ({args.n:,}): {summary(tight)}")
                print(
                    f"  end to end: {args.n:,} entries logged in {logged:.2f} s, all acknowledged after "
                    f"{end_to_end:.2f} s = {args.n / end_to_end:,.0f} entries/s"
                )
                paced = timed_logs(client, [make_entry(client, i) for i in range(args.paced)], rate=2000)
                assert client.flush(timeout=60), "paced run not delivered"
                print(f"{mode}: log(), server up, 2,000/s ({args.paced:,}): {summary(paced)}")
                print(f"  most entries only in memory at once: {client.stats()['max_queued']:,}")
            with Client(url, key, spool, **options) as client:  # the config from the disk copy; nothing answers
                assert client.config().from_disk
                down = timed_logs(client, [make_entry(client, i) for i in range(args.down_n)])
                print(f"{mode}: log(), server down, spooling ({args.down_n:,}): {summary(down)}")
                client.close(timeout=0)
            shutil.rmtree(spool)  # not sent: the fault run below counts exactly what it logs

        # --- 4. The fault run: counted alone ----------------------------------------------------------------
        DecisionKey.objects.filter(agent_id=agent.pk).delete()
        Decision.objects.filter(agent=agent).delete()
        connection.close()
        counts = fault_run(url, key, port, args, scratch / "fault", Client)
        stored = list(Decision.objects.filter(agent=agent).values_list("entry_id", flat=True))
        expected = set(counts["ids"])
        missing = len(expected - set(stored))
        extra = len(stored) - len(set(stored))
        print(
            f"fault run: {len(counts['ids']):,} logged, 2 server stops and starts, flush returned "
            f"{counts['flush']:.1f} s after the last log(); in the database: {len(stored):,} rows, "
            f"{missing} lost, {extra} duplicated, {len(set(stored) - expected)} unexpected; "
            f"{counts['retries']} retried sends, {counts['dead']} dead-lettered"
        )
        print(f"  log() during the fault run: {summary(counts['timings'])}; most only in memory: {counts['queued']:,}")
        print(f"load average (1, 5, 15 min) at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
        if missing or extra:
            raise SystemExit("the fault run lost or duplicated entries")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        DecisionKey.objects.filter(agent_id=agent.pk).delete()
        Decision.objects.filter(agent=agent).delete()
        Agent.objects.filter(pk=agent.pk).delete()
        connection.close()


def fault_run(url: str, key: str, port: int, args: argparse.Namespace, spool: Path, client_class: Any) -> dict:
    """``--fault-n`` entries at an even pace over about 24 s; the server is down from about 4 s to 8 s and from
    12 s to 16 s (plus the time it takes to start)."""
    rate = args.fault_n / 24
    ids: list[str] = []
    timings: list[float] = []
    with gunicorn(port, args.workers):
        client = client_class(url, key, spool)
        entries = [make_entry(client, i) for i in range(args.fault_n)]

        def agent() -> None:
            clock = time.perf_counter_ns
            start = time.perf_counter()
            for i, entry in enumerate(entries):
                due = start + i / rate
                while (pause := due - time.perf_counter()) > 0:
                    time.sleep(pause)
                began = clock()
                ids.append(client.log(entry))
                timings.append((clock() - began) / 1000)

        worker = threading.Thread(target=agent)
        worker.start()
        time.sleep(4)
    time.sleep(4)
    with gunicorn(port, args.workers):
        time.sleep(4)
    time.sleep(4)
    with gunicorn(port, args.workers):
        worker.join(timeout=600)
        began = time.perf_counter()
        if not client.flush(timeout=600):
            raise SystemExit("the fault run's flush timed out")
        flushed = time.perf_counter() - began
        stats = client.stats()
        client.close()
    return {
        "ids": ids,
        "flush": flushed,
        "retries": stats["retries"],
        "dead": stats["dead_lettered"],
        "queued": stats["max_queued"],
        "timings": sorted(timings),
    }


if __name__ == "__main__":
    main()
