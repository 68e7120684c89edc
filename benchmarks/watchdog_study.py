"""Monte Carlo study of the watchdog's test (not a test): how often a good change is rolled back, and how soon a
bad one is.

    .venv/bin/python benchmarks/watchdog_study.py [--runs 200] [--per-day 1000] [--base-rate 0.10] [--seed 1]
                                                  [--after 0.10 0.20 0.60] [--unweighted]

Pure and fast (numpy, no database): each run draws two weeks of decisions before a change and two weeks after
it, at ``--per-day`` decisions a day spread evenly; ``--fired-share`` of them fire an action and are all queued,
the rest are the weakest action and ``--sample-rate`` of those are sampled for review; ``--response-rate`` of
the queued ones are answered, one to two days later (uniformly, as the simulation's reviewers do). Every
response is an error with the run's probability (the same for fired and sampled decisions, so the weighted rate
is that probability). The watchdog passes every hour for the WATCHDOG_WATCH_DAYS after the change and calls the
real ``approvals.watchdog.watchdog_assess`` on what has arrived by then (weights, Kish's effective sizes, the
minimum of responses, tolerance and alpha from the settings), stopping at the first rollback or good verdict; a
change still undecided when its window ends is inconclusive.

Prints, per true error rate after the change: the share rolled back (for an unchanged rate: the false-rollback
rate), the time from the change to the rollback (median and 90th percentile), and the shares judged good and
inconclusive. docs/watchdog.md has the figures.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:1] = [str(ROOT)]

import argparse  # noqa: E402
import os  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from simulation.drift_study import Side, World, first_verdict, side_of  # noqa: E402

HOURS_BEFORE = 14 * 24  # the baseline: two weeks of decisions under the version before the change


def draw_side(rng: np.random.Generator, world: World, *, start: float, hours: float, error_rate: float) -> Side:
    """Responded decisions made in [start, start + hours), with their arrival times and weights."""
    n = int(rng.poisson(world.per_day * hours / 24.0))
    made = start + rng.random(n) * hours
    fired = rng.random(n) < world.fired_share
    sampled = ~fired & (rng.random(n) < world.sample_rate)
    answered = (fired | sampled) & (rng.random(n) < world.response_rate)
    made, sampled = made[answered], sampled[answered]
    arrival = made + rng.uniform(*world.delay_hours, size=len(made))
    error = rng.random(len(made)) < error_rate
    return side_of(arrival, sampled, error, sample_rate=world.sample_rate)


@dataclass(frozen=True)
class Outcome:
    verdict: str  # rollback, good, inconclusive
    hours: float | None  # from the change to the verdict


def one_run(rng: np.random.Generator, world: World, *, before: float, after: float, rules: dict[str, Any]) -> Outcome:
    from approvals.watchdog import watchdog_assess

    watch_hours = int(rules["WATCHDOG_WATCH_DAYS"]) * 24
    base = draw_side(rng, world, start=-HOURS_BEFORE, hours=HOURS_BEFORE, error_rate=before)
    new = draw_side(rng, world, start=0.0, hours=watch_hours, error_rate=after)
    verdict, hours = first_verdict(
        new=new,
        base=base,
        hours=watch_hours,
        assess=lambda n, b: watchdog_assess(
            new=n,
            base=b,
            min_responses=int(rules["WATCHDOG_MIN_RESPONSES"]),
            tolerance=float(rules["WATCHDOG_TOLERANCE"]),
            alpha=float(rules["WATCHDOG_ALPHA"]),
        ),
        weighted=world.weighted,
    )
    return Outcome(verdict, hours)


def study(
    *, runs: int, world: World, before: float, afters: list[float], seed: int, rules: dict[str, Any]
) -> list[dict[str, Any]]:
    rows = []
    for j, after in enumerate(afters):
        rng = np.random.default_rng([seed, j])
        outcomes = [one_run(rng, world, before=before, after=after, rules=rules) for _ in range(runs)]
        back = np.array([o.hours for o in outcomes if o.verdict == "rollback"], dtype=float)
        good = np.array([o.hours for o in outcomes if o.verdict == "good"], dtype=float)
        rows.append(
            {
                "after": after,
                "rolled_back": len(back) / runs,
                "rollback_median_h": float(np.median(back)) if len(back) else None,
                "rollback_p90_h": float(np.percentile(back, 90)) if len(back) else None,
                "good": len(good) / runs,
                "good_median_h": float(np.median(good)) if len(good) else None,
                "inconclusive": sum(o.verdict == "inconclusive" for o in outcomes) / runs,
            }
        )
    return rows


def _hours(value: float | None) -> str:
    if value is None:
        return "—"
    days, hours = divmod(int(round(value)), 24)
    return f"{days} d {hours:02d} h"


def table(rows: list[dict[str, Any]], before: float) -> str:
    lines = [
        "| error rate | rolled back | time to rollback: median | p90 | judged good | time to good: median "
        "| inconclusive |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        what = "unchanged" if abs(r["after"] - before) < 1e-12 else "worse"
        lines.append(
            f"| {before:.0%} → {r['after']:.0%} ({what}) | {r['rolled_back']:.1%} | {_hours(r['rollback_median_h'])} "
            f"| {_hours(r['rollback_p90_h'])} | {r['good']:.1%} | {_hours(r['good_median_h'])} "
            f"| {r['inconclusive']:.1%} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200, help="runs per true error rate (default 200)")
    parser.add_argument("--per-day", type=float, default=1000, help="decisions a day (default 1,000)")
    parser.add_argument("--fired-share", type=float, default=0.20, help="share that fires an action (default 0.2)")
    parser.add_argument("--sample-rate", type=float, default=0.10, help="weakest-action sample (default 0.1)")
    parser.add_argument("--response-rate", type=float, default=0.85, help="queued items answered (default 0.85)")
    parser.add_argument("--base-rate", type=float, default=0.10, help="error rate before the change (default 0.1)")
    parser.add_argument(
        "--after",
        type=float,
        nargs="+",
        help="true error rates after the change (default: the base rate, 0.2 and 0.6)",
    )
    parser.add_argument("--unweighted", action="store_true", help="weigh every response 1 (for comparison)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    # Settings only (the rules); no database is opened.
    os.environ.setdefault("LOOPSITE_VAR_DIR", tempfile.mkdtemp(prefix="loopsite-watchdog-study-"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "loopsite.settings")
    import django

    django.setup()
    from loopsite.rules import rules

    settings_rules = dict(rules())
    world = World(
        per_day=args.per_day,
        fired_share=args.fired_share,
        sample_rate=args.sample_rate,
        response_rate=args.response_rate,
        weighted=not args.unweighted,
    )
    afters = args.after or [args.base_rate, 0.20, 0.60]
    started = time.perf_counter()
    rows = study(
        runs=args.runs, world=world, before=args.base_rate, afters=afters, seed=args.seed, rules=settings_rules
    )
    seconds = time.perf_counter() - started
    responses_a_day = args.per_day * (args.fired_share + (1 - args.fired_share) * args.sample_rate) * args.response_rate
    print(
        f"{args.runs} runs per row; {args.per_day:g} decisions a day, {args.fired_share:.0%} fired, "
        f"{args.sample_rate:.0%} of the rest sampled, {args.response_rate:.0%} answered 1-2 days later "
        f"(about {responses_a_day:.0f} responses a day{'' if world.weighted else ', unweighted'}); hourly passes "
        f"for {settings_rules['WATCHDOG_WATCH_DAYS']} "
        f"days; min {settings_rules['WATCHDOG_MIN_RESPONSES']} responses, tolerance "
        f"{settings_rules['WATCHDOG_TOLERANCE']:.0%}, alpha {settings_rules['WATCHDOG_ALPHA']}; seed {args.seed}"
    )
    print(table(rows, args.base_rate))
    print(f"{seconds:.1f} s")


if __name__ == "__main__":
    main()
