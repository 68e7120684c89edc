"""The canary's verdict: the watchdog's own test (``approvals.watchdog.watchdog_assess``), run on the two arms
over the same days instead of on the weeks before and after a change.

The canary arm is the "new" side and the control arm (the live version, on the other sessions) the baseline:
``rollback`` aborts the canary, ``good`` promotes it to everyone, anything else waits for more responses until the
canary's time runs out (then it is ``inconclusive`` and left to an approver). Both arms see the same days, so what
moved in the world that week (volume, season, a new pattern) moves both and cancels out.
"""

from approvals.selectors import ErrorCounts
from approvals.watchdog import Assessment, watchdog_assess
from loopsite.rules import rule


def canary_assess(*, canary: ErrorCounts, control: ErrorCounts) -> Assessment:
    """Pure: the verdict on a canary from its arm's (weighted) error counts and the control arm's."""
    return watchdog_assess(
        new=canary,
        base=control,
        min_responses=int(rule("WATCHDOG_MIN_RESPONSES")),
        tolerance=float(rule("WATCHDOG_TOLERANCE")),
        alpha=float(rule("WATCHDOG_ALPHA")),
    )
