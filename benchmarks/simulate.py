"""Simulation benchmark (not a test): an 8-week ``miscalibrated`` run at 2,000 decisions a day on SQLite.

    .venv/bin/python benchmarks/simulate.py [--weeks 8] [--per-day 2000] [--seed 1]

Runs against a fresh SQLite database in a temporary folder (migrated first; the migration is not timed), so it
neither needs nor touches the configured database. Prints the weekly table and the seconds the run took: the
whole loop (112,000 decisions logged hour by hour through ``decision_log_batch``, the reviewers' responses,
the hourly watchdog, six weekly tuner cycles and the approver's decisions). Targets: under 60 seconds (issue 6),
under 30 seconds on a quiet machine (issue 14).

Beside the total it prints the CPU seconds of each phase of the loop (``Loop.log_hour``, ``respond_until``,
``watchdog``, ``tuner_cycle``, ``approver_decides``), each as a share of the run's CPU time, so that the figure
says where the time went without a profiler (which doubles it).
"""

import sys
from pathlib import Path

# Run as a script: the project root, not benchmarks/, goes first on sys.path so the project's apps import.
ROOT = Path(__file__).resolve().parent.parent
sys.path[:1] = [str(ROOT)]

import argparse  # noqa: E402
import os  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from datetime import date  # noqa: E402
from typing import Any  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weeks", type=int, default=8)
    parser.add_argument("--per-day", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    folder = tempfile.mkdtemp(prefix="loopsite-bench-sim-")
    os.environ["LOOPSITE_VAR_DIR"] = folder
    os.environ.pop("DATABASE_URL", None)
    os.environ.pop("REDIS_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "loopsite.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)

    from simulation.outputs import table_text
    from simulation.runner import Loop, simulate
    from simulation.world import scenario_get

    phases = ("log_hour", "respond_until", "watchdog", "tuner_cycle", "approver_decides")
    spent = dict.fromkeys(phases, 0.0)
    for name in phases:
        setattr(Loop, name, _timed(getattr(Loop, name), name, spent))

    started = time.perf_counter()
    cpu = time.process_time()
    result = simulate(
        scenario=scenario_get("miscalibrated"),
        weeks=args.weeks,
        per_day=args.per_day,
        seed=args.seed,
        start=date(2026, 1, 5),
    )
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu
    print(table_text(result.table()))
    decisions = args.weeks * 7 * args.per_day
    print(
        f"simulate miscalibrated: {args.weeks} weeks x {args.per_day}/day = {decisions:,} decisions on SQLite "
        f"in {seconds:.1f} s wall ({cpu_seconds:.1f} s CPU); targets < 60 s (issue 6), < 30 s (issue 14)"
    )
    print("CPU seconds by phase: " + ", ".join(f"{k} {v:.1f} s ({v / cpu_seconds:.0%})" for k, v in spent.items()))


def _timed(method: Callable[..., Any], name: str, spent: dict[str, float]) -> Callable[..., Any]:
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.process_time()
        try:
            return method(*args, **kwargs)
        finally:
            spent[name] += time.process_time() - started

    return timed


if __name__ == "__main__":
    main()
