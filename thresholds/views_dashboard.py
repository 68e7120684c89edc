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

from people.roles import is_approver, is_reviewer, is_staff
from thresholds.metrics import threshold_histories, weekly_metrics
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


@require_GET
@role_required
def dashboard(request: HttpRequest) -> HttpResponse:
    """Every agent: its live version, health, last week's dismissal rate and what waits for an approver."""
    now = timezone.now()
    rows = []
    for agent in Agent.objects.order_by("agent_id"):
        metrics = weekly_metrics(agent=agent, weeks=2, now=now)
        last_run = TunerRun.objects.filter(agent=agent, status=TunerRun.Status.DONE).order_by("-cycle").first()
        live = ConfigVersion.objects.filter(agent=agent, is_live=True).first()
        rows.append(
            {
                "agent": agent,
                "live": live,
                "health": (last_run.output or {}).get("systemHealth") if last_run else None,
                "last_week": metrics[0],
                "this_week": metrics[1],
                "pending": Proposal.objects.filter(agent=agent, status=Proposal.Status.PENDING).count(),
            }
        )
    return render(request, "dashboard/index.html", {"rows": rows})


@require_GET
@role_required
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
        "weeks": [m.week_start.isoformat() for m in metrics],
        "series": {
            "dismissalRate": [_pct(m.dismissal_rate) for m in metrics],
            "escalationRate": [_pct(m.escalation_rate) for m in metrics],
            "responseRate": [_pct(m.response_rate) for m in metrics],
            "acceptanceRate": [_pct(m.acceptance_rate) for m in metrics],
        },
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
        "health": (last_run.output or {}).get("systemHealth") if last_run else None,
        "summary": (last_run.output or {}).get("summary", "") if last_run else "",
        "pending": Proposal.objects.filter(agent=agent, status=Proposal.Status.PENDING).order_by("rank"),
        "chart": chart,
        "weeks": weeks,
        "week_choices": WEEK_CHOICES,
        "can_lock": is_approver(request.user),
        "cluster_trends": cluster_trends_latest(agent=agent),
    }
    return render(request, "dashboard/agent.html", context)
