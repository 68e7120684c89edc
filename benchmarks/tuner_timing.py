"""Timing a tuner cycle three times, as its reference, the aggregate pass, is timed (``benchmarks/tuner_cycle.py``
takes the best of each, ``benchmarks/month.py`` the median). Not a test."""

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any


def timed_cycle(
    agent: Any, *, now: datetime, tries: int = 3, before: Callable[[], object] | None = None
) -> tuple[list[float], Any]:
    """Seconds for up to ``tries`` cycles, the full run's first, and the run. A cycle is stored once per week, so
    the full run (``tuner_cycle_run``: claim, compute, store) is timed once; the other tries repeat its computation
    (``cycle_compute``, reads only) and add the run's own time outside it (the claim and the store). A repeat
    counts only if it proposes what the run proposed. ``before`` runs ahead of each try, untimed here: a
    benchmark times its reference there, so each cycle has one measured next to it, on a machine whose speed
    drifts within minutes."""
    from tuner import selectors, services
    from tuner.generators import StatisticalGenerator
    from tuner.services import tuner_cycle_run

    computed: list[float] = []
    original = services.cycle_compute

    def timed(**kwargs: Any) -> services.CycleResult:
        began = time.monotonic()
        try:
            return original(**kwargs)
        finally:
            computed.append(time.monotonic() - began)

    services.cycle_compute = timed  # type: ignore[assignment]
    if before is not None:
        before()
    try:
        began = time.monotonic()
        run = tuner_cycle_run(agent=agent, now=now, generator=StatisticalGenerator())
        run_s = time.monotonic() - began
    finally:
        services.cycle_compute = original  # type: ignore[assignment]
    outside = run_s - computed[0]
    window = selectors.cycle_window(agent=agent, now=now)
    previous = selectors.previous_run(agent=agent, cycle=window.cycle)
    since = previous.created_at if previous is not None else window.start
    proposed = [(p["thresholdName"], round(p["proposedValue"], 6)) for p in (run.output or {}).get("proposals", [])]
    times = [run_s]
    for _ in range(tries - 1):
        if before is not None:
            before()
        began = time.monotonic()
        result = original(agent=agent, window=window, now=now, since=since, generator=StatisticalGenerator())
        again_s = time.monotonic() - began
        if [(c.threshold_name, round(c.proposed_value, 6)) for c in result.outcome.proposals] == proposed:
            times.append(again_s + outside)
    return times, run
