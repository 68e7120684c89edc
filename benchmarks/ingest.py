"""Ingest benchmark (not a test): the batch API of a real gunicorn server against PostgreSQL COPY.

    DATABASE_URL=postgres://USER@127.0.0.1:5432/DB .venv/bin/python benchmarks/ingest.py [--n 100000]

1. Registers its own agent, starts gunicorn (``--workers``) on a free localhost port.
2. Sends N decisions through ``POST /api/v1/decisions/batch`` (``--batch`` entries a request) over
   ``--connections`` client connections (threads with http.client); every entry must come back "created".
3. Loads the same N rows with psycopg ``COPY`` into a scratch copy of the decision table (same columns,
   defaults and indexes), with the rows built before the clock starts so COPY gets its best case.
4. Prints entries/s for both and their ratio (target: the API reaches >= 60 % of COPY).
5. Sends ``--latency-requests`` single ``POST /api/v1/decisions`` from ``--latency-clients`` concurrent clients
   and prints p50/p99 latency (target: p99 < 50 ms) and the server's CPU per POST.
6. Runs the same two statements a single POST needs (the agent-key look-up and the one-statement insert of the
   registry row and the decision) over one bare psycopg connection, ``--latency-requests`` times in a row, and
   prints the server's CPU per POST as a multiple of that round trip (target: at most 2.5x).

Everything runs on localhost, every loop is bounded, and the agent, its rows, the scratch table and the server
are removed at the end, also on failure.
"""

import sys
from pathlib import Path

# Run as a script: the project root, not benchmarks/, goes first on sys.path so the project's apps import.
ROOT = Path(__file__).resolve().parent.parent
sys.path[:1] = [str(ROOT)]

import argparse  # noqa: E402
import http.client  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import queue  # noqa: E402
import random  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from typing import Any  # noqa: E402

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "loopsite.settings")

ACTIONS = ["auto-resolve", "flag", "escalate"]
FEATURES = ["amount_z", "velocity_1h", "account_age_days", "night", "country_risk", "device_new", "merchant_risk"]
RULES = ["high_amount", "new_device", "velocity_spike", "risky_merchant", "foreign_ip"]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="decisions to ingest (default 100000)")
    parser.add_argument("--batch", type=int, default=1000, help="entries per batch request (at most 1000)")
    parser.add_argument("--connections", type=int, default=4, help="client connections for the batch phase")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes")
    parser.add_argument("--latency-requests", type=int, default=3200, help="single POSTs in the latency phase")
    parser.add_argument("--latency-clients", type=int, default=16, help="concurrent clients in the latency phase")
    args = parser.parse_args()
    if not 1 <= args.batch <= 1000:
        parser.error("--batch must be 1..1000")
    if args.n < 1 or args.connections < 1 or args.workers < 1 or args.latency_clients < 1:
        parser.error("--n, --connections, --workers and --latency-clients must be positive")
    return args


# --- The data -----------------------------------------------------------------------------------------------


def make_entries(n: int, *, agent_id: str, run: str, now: datetime, rng: random.Random) -> list[dict[str, Any]]:
    entries = []
    for i in range(n):
        confidence = round(rng.random(), 4)
        action = "escalate" if confidence >= 0.85 else "flag" if confidence >= 0.6 else "auto-resolve"
        entries.append(
            {
                "id": f"{run}-{i}",
                "timestamp": (now - timedelta(seconds=rng.randrange(7 * 86400))).isoformat(),
                "agentId": agent_id,
                "sessionId": f"session-{i // 50}",
                "decision": {
                    "action": action,
                    "confidence": confidence,
                    "thresholdUsed": {"escalate": 0.85, "flag": 0.6, "auto-resolve": 0.6}[action],
                    "reasoning": f"score {confidence:.2f} from amount and velocity; rule set v3 matched",
                },
                "context": {
                    "inputHash": f"sha256:{uuid.UUID(int=rng.getrandbits(128)).hex}",
                    "features": {name: round(rng.uniform(-3, 3), 3) for name in FEATURES},
                    "matchedRules": rng.sample(RULES, k=rng.randrange(0, 3)),
                },
            }
        )
    return entries


# --- The server ---------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def gunicorn(port: int, workers: int) -> Iterator[subprocess.Popen[bytes]]:
    log = tempfile.NamedTemporaryFile(prefix="bench-gunicorn-", suffix=".log", delete=False)  # noqa: SIM115
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "loopsite.wsgi:application",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--log-level",
        "warning",
        "--timeout",
        "120",
    ]
    env = {**os.environ, "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING")}
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            if server.poll() is not None:
                raise SystemExit(f"gunicorn exited with {server.returncode}:\n{Path(log.name).read_text()[-3000:]}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/healthz")
                status = conn.getresponse().status
                conn.close()
                if status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("gunicorn did not answer /healthz within 60 s")
            time.sleep(0.2)
        yield server
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
        log.close()
        Path(log.name).unlink(missing_ok=True)


def cpu_seconds(server: subprocess.Popen[bytes]) -> float:
    """CPU time (user + system) used so far by gunicorn's master and workers, from /proc (Linux).

    The machine may be shared, so wall-clock rates move with its load; the server's CPU per entry does not.
    """
    tick = os.sysconf("SC_CLK_TCK")
    pids = [server.pid]
    children = Path(f"/proc/{server.pid}/task/{server.pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


# --- The phases ---------------------------------------------------------------------------------------------


def send_batches(port: int, key: str, bodies: list[bytes], connections: int) -> tuple[float, int]:
    """All batch bodies over ``connections`` keep-alive connections. Returns (seconds, entries created)."""
    work: queue.Queue[bytes] = queue.Queue()
    for body in bodies:
        work.put(body)
    created = [0] * connections
    failures: list[str] = []
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def client(slot: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        try:
            while not failures:
                try:
                    body = work.get_nowait()
                except queue.Empty:
                    return
                conn.request("POST", "/api/v1/decisions/batch", body=body, headers=headers)
                response = conn.getresponse()
                payload = response.read()
                if response.status != 200:
                    failures.append(f"HTTP {response.status}: {payload[:300]!r}")
                    return
                results = json.loads(payload)["results"]
                bad = [r for r in results if r["status"] != "created"]
                if bad:
                    failures.append(f"{len(bad)} entries not created, e.g. {bad[0]}")
                    return
                created[slot] += len(results)
        except Exception as exc:  # noqa: BLE001 - reported below
            failures.append(repr(exc))
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(connections)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=3600)
    elapsed = time.perf_counter() - start
    if failures:
        raise SystemExit(f"batch phase failed: {failures[0]}")
    return elapsed, sum(created)


COPY_COLUMNS = [
    "entry_id",
    "agent_id",
    "session_id",
    "timestamp",
    "received_at",
    "action",
    "confidence",
    "threshold_used",
    "threshold_name",
    "reasoning",
    "input_hash",
    "features",
    "matched_rules",
    "config_version_id",
    "review_reason",
    "queued",
    "content_hash",
]


def checkpoint(dsn: str) -> None:
    """Write out PostgreSQL's dirty buffers before a timed phase, so that a checkpoint the previous phase's writes
    brought on does not land in this one (the COPY phase's time moved by a third from run to run without). Needs
    a superuser or pg_checkpoint; without, the phases run as they are."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        try:
            conn.execute("CHECKPOINT")
        except psycopg.errors.InsufficientPrivilege:
            print("(no CHECKPOINT before the timed phases: the role may not)", flush=True)


def copy_rows(dsn: str, table: str, entries: list[dict[str, Any]], agent_pk: int, version_pk: int) -> float:
    """COPY the same decisions into ``table`` (a scratch copy of the decision table). Returns seconds."""
    import psycopg

    now = datetime.now(UTC)
    names = {"escalate": "escalate_threshold", "flag": "flag_threshold", "auto-resolve": "flag_threshold"}
    rows = [
        (
            e["id"],
            agent_pk,
            e["sessionId"],
            e["timestamp"],
            now,
            e["decision"]["action"],
            e["decision"]["confidence"],
            e["decision"]["thresholdUsed"],
            names[e["decision"]["action"]],
            e["decision"]["reasoning"],
            e["context"]["inputHash"],
            json.dumps(e["context"]["features"]),
            json.dumps(e["context"]["matchedRules"]),
            version_pk,
            "fired" if e["decision"]["action"] != "auto-resolve" else "none",
            e["decision"]["action"] != "auto-resolve",
            "0" * 64,
        )
        for e in entries
    ]
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        start = time.perf_counter()
        with cur.copy(f"COPY {table} ({', '.join(COPY_COLUMNS)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        conn.commit()
        return time.perf_counter() - start


def single_latency(port: int, key: str, entries: list[dict[str, Any]], clients: int) -> list[float]:
    """Each client POSTs its share of ``entries`` one at a time on its own connection. Returns seconds each."""
    shares = [entries[i::clients] for i in range(clients)]
    timings: list[list[float]] = [[] for _ in range(clients)]
    failures: list[str] = []
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    start_line = threading.Barrier(clients)

    def client(slot: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        bodies = [json.dumps(e).encode() for e in shares[slot]]
        try:
            start_line.wait(timeout=60)
            for body in bodies:
                if failures:
                    return
                began = time.perf_counter()
                conn.request("POST", "/api/v1/decisions", body=body, headers=headers)
                response = conn.getresponse()
                payload = response.read()
                timings[slot].append(time.perf_counter() - began)
                if response.status != 201:
                    failures.append(f"HTTP {response.status}: {payload[:300]!r}")
        except Exception as exc:  # noqa: BLE001 - reported below
            failures.append(repr(exc))
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=3600)
    if failures:
        raise SystemExit(f"latency phase failed: {failures[0]}")
    return sorted(t for per_client in timings for t in per_client)


def bare_round_trips(dsn: str, prefix: str, entries: list[dict[str, Any]], agent_pk: int, version_pk: int) -> float:
    """The reference for a single POST: its two statements (the key look-up with its agent, and the registry row
    and the decision in one statement) in bare psycopg, one entry after another. Returns seconds per entry."""
    import psycopg

    from auditlog.models import Decision, DecisionKey
    from auditlog.services import DECISION_COLUMNS, KEY_COLUMNS
    from thresholds.models import Agent, AgentKey

    lookup = (
        f"SELECT k.id, k.hashed_key, a.* FROM {AgentKey._meta.db_table} k JOIN {Agent._meta.db_table} a "
        "ON a.id = k.agent_id WHERE k.prefix = %s AND k.revoked_at IS NULL LIMIT 1"
    )
    insert = (
        f"WITH registered AS (INSERT INTO {DecisionKey._meta.db_table} ({', '.join(KEY_COLUMNS)}) "
        f"VALUES ({', '.join(['%s'] * len(KEY_COLUMNS))})) "
        f"INSERT INTO {Decision._meta.db_table} ({', '.join(DECISION_COLUMNS)}) "
        f"VALUES ({', '.join(['%s'] * len(DECISION_COLUMNS))}) RETURNING seq"
    )
    now = datetime.now(UTC)
    params = []
    for e in entries:
        d, c = e["decision"], e["context"]
        timestamp = datetime.fromisoformat(e["timestamp"])
        key_row = [e["id"], "0" * 63, agent_pk, timestamp]
        row = [e["id"], agent_pk, e["sessionId"], timestamp, now, d["action"], d["confidence"], d["thresholdUsed"]]
        row += ["flag_threshold", d["reasoning"], c["inputHash"], json.dumps(c["features"])]
        row += [json.dumps(c["matchedRules"]), version_pk, "fired", True, "0" * 63]
        row += [None] * (len(DECISION_COLUMNS) - len(row))  # no human response, claim or shadow
        params.append(key_row + row)
    with psycopg.connect(dsn, autocommit=True) as conn, conn.cursor() as cur:
        start = time.perf_counter()
        for values in params:
            cur.execute(lookup, [prefix])
            cur.fetchone()
            cur.execute(insert, values)
            cur.fetchone()
        return (time.perf_counter() - start) / len(params)


def percentile(sorted_values: list[float], fraction: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


# --- Set-up and clean-up ------------------------------------------------------------------------------------


def main() -> None:
    args = parse_args()
    dsn = os.environ.get("DATABASE_URL", "")
    if not dsn.startswith(("postgres://", "postgresql://")):
        raise SystemExit("DATABASE_URL must name a PostgreSQL database (postgres://...)")

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from auditlog.models import Decision, DecisionKey
    from thresholds.models import Agent, ConfigVersion
    from thresholds.services import agent_create

    call_command("migrate", verbosity=0, interactive=False)
    run = f"bench{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    agent, key = agent_create(
        agent_id=run,
        actions=ACTIONS,
        thresholds=[
            {"name": "flag_threshold", "value": 0.6, "action": "flag"},
            {"name": "escalate_threshold", "value": 0.85, "action": "escalate"},
        ],
        now=now,
    )
    version_pk = ConfigVersion.objects.get(agent=agent, is_live=True).pk
    table = f"bench_copy_{run}"
    rng = random.Random(20260302)
    port = free_port()
    print(
        f"ingest benchmark: n={args.n} batch={args.batch} connections={args.connections} "
        f"workers={args.workers} postgres={connection.settings_dict['NAME']} cpus={os.cpu_count()} "
        f"load={os.getloadavg()[0]:.1f}",
        flush=True,
    )
    try:
        entries = make_entries(args.n, agent_id=run, run=run, now=now, rng=rng)
        bodies = [
            json.dumps({"entries": entries[i : i + args.batch]}).encode() for i in range(0, len(entries), args.batch)
        ]
        with connection.cursor() as cur:
            cur.execute(f"CREATE TABLE {table} (LIKE {Decision._meta.db_table} INCLUDING ALL)")
        connection.close()

        with gunicorn(port, args.workers) as server:
            # Warm-up, not timed: every worker opens its database pool and loads the code paths.
            warm = make_entries(4 * args.workers, agent_id=run, run=f"{run}-warm", now=now, rng=rng)
            send_batches(port, key, [json.dumps({"entries": [e]}).encode() for e in warm], args.connections)
            checkpoint(dsn)
            cpu_before = cpu_seconds(server)
            api_seconds, created = send_batches(port, key, bodies, args.connections)
            batch_cpu = cpu_seconds(server) - cpu_before
            if created != args.n:
                raise SystemExit(f"only {created} of {args.n} entries were created")
            checkpoint(dsn)  # COPY does not pay for writing out what the batch phase left dirty
            copy_seconds = copy_rows(dsn, table, entries, agent.pk, version_pk)
            api_rate, copy_rate = args.n / api_seconds, args.n / copy_seconds
            ratio = api_rate / copy_rate
            print(f"batch API : {args.n} entries in {api_seconds:.2f} s = {api_rate:,.0f} entries/s")
            print(f"COPY      : {args.n} rows in {copy_seconds:.2f} s = {copy_rate:,.0f} rows/s")
            print(f"ratio     : {ratio:.1%} of COPY (target >= 60 %): {'met' if ratio >= 0.60 else 'NOT met'}")
            print(f"server CPU: {batch_cpu:.2f} s for the batch phase = {batch_cpu / args.n * 1e6:.0f} us per entry")

            singles = make_entries(args.latency_requests, agent_id=run, run=f"{run}-single", now=now, rng=rng)
            cpu_before = cpu_seconds(server)
            timings = single_latency(port, key, singles, args.latency_clients)
            single_cpu = cpu_seconds(server) - cpu_before
            p50, p99 = percentile(timings, 0.50) * 1000, percentile(timings, 0.99) * 1000
            print(
                f"single POST: {len(timings)} requests, {args.latency_clients} concurrent clients: "
                f"p50 {p50:.1f} ms, p99 {p99:.1f} ms (target p99 < 50 ms): {'met' if p99 < 50 else 'NOT met'}"
            )
            per_post = single_cpu / len(timings)
            bare = bare_round_trips(
                dsn,
                key.split("_")[1],
                make_entries(args.latency_requests, agent_id=run, run=f"{run}-bare", now=now, rng=rng),
                agent.pk,
                version_pk,
            )
            print(f"server CPU: {per_post * 1000:.2f} ms per single POST")
            print(f"bare psycopg: {bare * 1000:.2f} ms per round trip of the same two statements")
            print(
                f"ratio     : server CPU per POST = {per_post / bare:.1f}x the bare round trip (target <= 2.5x): "
                f"{'met' if per_post / bare <= 2.5 else 'NOT met'}"
            )
            print(f"load average (1, 5, 15 min) at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    finally:
        with connection.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {table}")
        DecisionKey.objects.filter(agent_id=agent.pk).delete()
        Decision.objects.filter(agent=agent).delete()
        Agent.objects.filter(pk=agent.pk).delete()
        # The deleted rows' space is made reusable now, so the next run does not insert into tables and indexes
        # bloated by this one's dead rows (or meet an autovacuum of them halfway through its batch phase).
        connection.close()
        import psycopg

        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"VACUUM {DecisionKey._meta.db_table}, {Decision._meta.db_table}")


if __name__ == "__main__":
    main()
