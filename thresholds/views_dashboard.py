"""The dashboard: every agent's four numbers week by week, its thresholds' history, its health and last cycle.

Reachable by every role (reviewers, approvers, admins). Views read through selectors and render; the charts are
drawn by the vendored Chart.js from JSON embedded in the page.
"""

from collections.abc import Callable
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from auditlog.models import Decision
from loopsite.replica import lagging_reads
from people.roles import is_reviewer, is_staff
from thresholds.metrics import WeeklyMetrics, threshold_histories, weekly_metrics
from thresholds.models import Agent, ConfigVersion
from tuner.models import Proposal, TunerRun
from tuner.selectors import cluster_trends_latest

DEFAULT_WEEKS = 12
WEEK_CHOICES = (4, 8, 12, 26, 52)

View = Callable[..., HttpResponse]


def role_required(view: View) -> View:
    """Anonymous visitors sign in first; users without any role get 403."""

    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not (is_reviewer(request.user) or is_staff(request.user)):
            raise PermissionDenied("The dashboard is for reviewers, approvers and admins.")
        return view(request, *args, **kwargs)

    wrapped.__name__ = view.__name__
    wrapped.__doc__ = view.__doc__
    return wrapped


def _weeks(request: HttpRequest) -> int:
    try:
        weeks = int(request.GET.get("weeks", DEFAULT_WEEKS))
    except ValueError:
        return DEFAULT_WEEKS
    return max(1, min(weeks, 104))


def _pct(value: float | None) -> float | None:
    return None if value is None else round(100 * value, 1)


SPARK_WEEKS = 8
SPARK_WIDTH, SPARK_HEIGHT = 120, 28
SPARK_MIN_TOP = 0.3
SERIES = {
    "dismissalRate": "dismissal_rate",
    "escalationRate": "escalation_rate",
    "responseRate": "response_rate",
    "acceptanceRate": "acceptance_rate",
}


def _health(agent: Agent, last_run: TunerRun | None) -> str:
    """The last cycle's verdict, never a verdict on nothing: ``no data`` before the first decision, ``baseline``
    before the first finished cycle."""
    if not Decision.objects.filter(agent=agent).exists():
        return "no data"
    if last_run is None:
        return "baseline"
    return str((last_run.output or {}).get("systemHealth") or "baseline")


def _weekly_chart(metrics: list[WeeklyMetrics]) -> dict[str, Any]:
    """The four rates week by week. The last week is the current one, unfinished: its values are left out of the
    lines (an unfinished week reads as a drop) and given apart as ``soFar``, drawn dashed."""
    done, current = metrics[:-1], metrics[-1]
    return {
        "weeks": [m.week_start.isoformat() for m in metrics],
        "series": {key: [_pct(getattr(m, attr)) for m in done] + [None] for key, attr in SERIES.items()},
        "soFar": {key: _pct(getattr(current, attr)) for key, attr in SERIES.items()},
        "partialWeek": current.week_start.isoformat(),
    }


def _sparkline(values: list[float | None], top: float) -> list[str]:
    """SVG polyline ``points`` for rates from 0 (the bottom) to ``top``, one polyline for each run of weeks with a
    value."""
    step = SPARK_WIDTH / max(1, len(values) - 1)
    lines: list[list[str]] = [[]]
    for i, v in enumerate(values):
        if v is None:
            lines.append([])
            continue
        y = SPARK_HEIGHT - 2 - v / top * (SPARK_HEIGHT - 4)
        lines[-1].append(f"{i * step:.1f},{y:.1f}")
    # A single week is a dot: a polyline of one point draws nothing, so it gets a zero-length second point.
    return [" ".join(line if len(line) > 1 else [*line, line[0]]) for line in lines if line]


@require_GET
@role_required
@lagging_reads()  # inside role_required: the session and user are read from the primary
def dashboard(request: HttpRequest) -> HttpResponse:
    """Every agent: its live version, health, last week's dismissal rate and what waits for an approver."""
    now = timezone.now()
    rows = []
    for agent in Agent.objects.order_by("agent_id"):
        metrics = weekly_metrics(agent=agent, weeks=SPARK_WEEKS + 1, now=now)
        done = metrics[:-1]  # the finished weeks: the current one would read as a drop
        last_run = TunerRun.objects.filter(agent=agent, status=TunerRun.Status.DONE).order_by("-cycle").first()
        live = ConfigVersion.objects.filter(agent=agent, is_live=True).first()
        rates = [r for m in done for r in (m.dismissal_rate, m.escalation_rate) if r is not None]
        top = max([SPARK_MIN_TOP, *rates])  # both lines on one scale, small rates still visible
        rows.append(
            {
                "agent": agent,
                "live": live,
                "health": _health(agent, last_run),
                "last_week": metrics[-2],
                "this_week": metrics[-1],
                "spark": {
                    "dismissal": _sparkline([m.dismissal_rate for m in done], top),
                    "escalation": _sparkline([m.escalation_rate for m in done], top),
                    "top": round(100 * top),
                }
                if rates
                else None,
                "pending": Proposal.objects.filter(agent=agent, status=Proposal.Status.PENDING).count(),
            }
        )
    context = {"rows": rows, "spark_weeks": SPARK_WEEKS, "spark_width": SPARK_WIDTH, "spark_height": SPARK_HEIGHT}
    return render(request, "dashboard/index.html", context)


@require_GET
@role_required
@lagging_reads()
def dashboard_agent(request: HttpRequest, agent_id: str) -> HttpResponse:
    agent = Agent.objects.filter(agent_id=agent_id).first()
    if agent is None:
        raise Http404(f"no agent {agent_id}")
    weeks = _weeks(request)
    metrics = weekly_metrics(agent=agent, weeks=weeks, now=timezone.now())
    histories = threshold_histories(agent=agent)
    last_run = TunerRun.objects.filter(agent=agent).exclude(output__isnull=True).order_by("-cycle").first()
    live = ConfigVersion.objects.filter(agent=agent, is_live=True).first()
    chart = {
        **_weekly_chart(metrics),
        "healthyDismissal": 15,
        "thresholds": [
            {
                "name": h.name,
                "steps": [{"x": at.isoformat(), "y": value} for at, value in h.steps],
                "events": [
                    {"x": e.at.isoformat(), "y": e.value, "kind": e.kind, "proposal": e.proposal_id, "who": e.who}
                    for e in h.events
                    if e.value is not None and e.kind != "initial"
                ],
            }
            for h in histories
        ],
        "now": timezone.now().isoformat(),
    }
    context = {
        "agent": agent,
        "live": live,
        "metrics": metrics,
        "histories": histories,
        "last_run": last_run,
        "health": _health(agent, last_run),
        "has_decisions": Decision.objects.filter(agent=agent).exists(),
        "summary": (last_run.output or {}).get("summary", "") if last_run else "",
        "pending": Proposal.objects.filter(agent=agent, status=Proposal.Status.PENDING).order_by("rank"),
        "chart": chart,
        "weeks": weeks,
        "week_choices": WEEK_CHOICES,
        **_lock_context(request.user, agent),
        "cluster_trends": cluster_trends_latest(agent=agent),
    }
    return render(request, "dashboard/agent.html", context)


def _lock_context(user: Any, agent: Agent) -> dict[str, Any]:
    """Whether the lock and unlock controls are shown, and the sentence shown in their place to an approver who is
    not one of the agent's designated approvers."""
    from approvals.guard import LOCK, UNLOCK, approver_refusal, scope_note

    verb = UNLOCK if agent.is_locked else LOCK
    return {
        "can_lock": approver_refusal(user, verb, agent=agent) is None,
        "lock_note": scope_note(user, verb, agent=agent),
    }
