"""Pages for approvers: the proposals, the approval view with its decision form, the audit trail, rollback."""

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from approvals.api import audit_csv
from approvals.selectors import audit_events, proposal_get, proposal_view, proposals_list, threshold_chart
from approvals.services import config_rollback, proposal_create_manual, proposal_decide
from loopsite.exceptions import DomainError
from people.roles import is_approver, is_staff
from thresholds.models import Agent
from thresholds.selectors import agent_get, config_get_live, config_versions_list, threshold_definitions
from tuner.models import Proposal


def _require(request: HttpRequest) -> None:
    if not (is_staff(request.user) or is_approver(request.user)):
        raise PermissionDenied("only approvers and staff see proposals and the audit trail")


def _agent_or_none(agent_id: str | None) -> Agent | None:
    if not agent_id:
        return None
    try:
        return agent_get(agent_id=agent_id)
    except DomainError:
        return None


@login_required
def proposal_list(request: HttpRequest) -> HttpResponse:
    _require(request)
    agent = _agent_or_none(request.GET.get("agent"))
    status = request.GET.get("status", "pending")
    if status not in Proposal.Status.values:
        status = ""
    proposals = list(proposals_list(agent=agent, status=status or None)[:200])
    live_by_agent: dict[int, dict[str, float]] = {}
    rows = []
    for p in proposals:
        if p.agent_id not in live_by_agent:
            live_by_agent[p.agent_id] = config_get_live(agent=p.agent).thresholds
        rows.append({"p": p, "live_value": live_by_agent[p.agent_id].get(p.threshold_name)})
    return render(
        request,
        "approvals/proposal_list.html",
        {
            "rows": rows,
            "agents": Agent.objects.all(),
            "agent": agent,
            "status": status,
            "statuses": Proposal.Status.values,
            "can_propose": is_staff(request.user) or is_approver(request.user),
        },
    )


def _detail_context(request: HttpRequest, proposal: Proposal) -> dict[str, Any]:
    view = proposal_view(proposal=proposal)
    chart = threshold_chart(agent=proposal.agent, threshold_name=proposal.threshold_name, now=timezone.now())
    chart.update(
        {
            "threshold": proposal.threshold_name,
            "current": view.live_value,
            "proposed": proposal.proposed_value,
        }
    )
    return {
        "view": view,
        "p": proposal,
        "chart": chart,
        "can_decide": is_approver(request.user)
        and proposal.status == Proposal.Status.PENDING
        and proposal.created_by_id != request.user.pk,
        "own_proposal": proposal.created_by_id is not None and proposal.created_by_id == request.user.pk,
    }


@login_required
@require_http_methods(["GET", "POST"])
def proposal_detail(request: HttpRequest, pk: int) -> HttpResponse:
    _require(request)
    try:
        proposal = proposal_get(proposal_id=pk)
    except DomainError as exc:
        return render(request, "approvals/error.html", {"message": exc.message}, status=exc.status_code)
    form: dict[str, Any] = {}
    if request.method == "POST":
        form = {
            "decision": request.POST.get("decision", ""),
            "value": request.POST.get("value", ""),
            "rationale": request.POST.get("rationale", ""),
        }
        try:
            value = float(form["value"]) if form["decision"] == "modify" and form["value"].strip() else None
        except ValueError:
            value = None
            error: DomainError | None = DomainError("value must be a number", field="value")
        else:
            error = None
        if error is None:
            try:
                decided = proposal_decide(
                    proposal=proposal,
                    actor=request.user,
                    decision=form["decision"],
                    rationale=form["rationale"],
                    value=value,
                    now=timezone.now(),
                )
            except DomainError as exc:
                error = exc
            else:
                live = config_get_live(agent=decided.agent)
                if decided.status == Proposal.Status.REJECTED:
                    messages.success(request, f"Rejected: {decided.threshold_name} stays as it is.")
                else:
                    messages.success(
                        request,
                        f"{decided.status.capitalize()}: {decided.threshold_name} is "
                        f"{decided.decided_value:g} in v{live.version}, live now.",
                    )
                return redirect("proposal-detail", pk=decided.pk)
        proposal = proposal_get(proposal_id=pk)
        context = _detail_context(request, proposal)
        context.update({"error": error.message, "error_field": error.field, "form": form})
        return render(request, "approvals/proposal_detail.html", context, status=error.status_code)
    context = _detail_context(request, proposal)
    context["form"] = form
    return render(request, "approvals/proposal_detail.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def proposal_new(request: HttpRequest) -> HttpResponse:
    """A staff member's manual proposal; it goes through the same gate."""
    _require(request)
    agents = list(Agent.objects.all())
    form = {k: request.POST.get(k, request.GET.get(k, "")) for k in ("agent", "threshold", "value", "rationale")}
    error = None
    if request.method == "POST":
        agent = _agent_or_none(form["agent"])
        try:
            if agent is None:
                raise DomainError("choose an agent", field="agent")
            try:
                value = float(form["value"])
            except ValueError:
                raise DomainError("value must be a number", field="value") from None
            proposal = proposal_create_manual(
                agent=agent,
                threshold_name=form["threshold"],
                proposed_value=value,
                rationale=form["rationale"],
                actor=request.user,
                now=timezone.now(),
            )
        except DomainError as exc:
            error = exc.message
        else:
            messages.success(request, "Proposed. Another approver has been asked to decide it.")
            return redirect("proposal-detail", pk=proposal.pk)
    thresholds = []
    for a in agents:
        live = config_get_live(agent=a).thresholds
        for name in threshold_definitions(agent=a):
            thresholds.append({"agent": a.agent_id, "name": name, "value": live.get(name)})
    return render(
        request,
        "approvals/proposal_new.html",
        {"agents": agents, "thresholds": thresholds, "form": form, "error": error},
        status=400 if error else 200,
    )


@login_required
def audit_trail(request: HttpRequest) -> HttpResponse:
    _require(request)
    agent = _agent_or_none(request.GET.get("agent"))
    threshold = request.GET.get("threshold", "").strip()
    events = audit_events(agent=agent, threshold=threshold or None)
    if request.GET.get("export") == "csv":
        return audit_csv(events, f"audit-{agent.agent_id if agent else 'all'}.csv")
    names: list[str] = sorted(threshold_definitions(agent=agent)) if agent else []
    return render(
        request,
        "approvals/audit_trail.html",
        {
            "events": list(events.reverse()[:500]),
            "agents": Agent.objects.all(),
            "agent": agent,
            "threshold": threshold,
            "threshold_names": names,
            "query": request.GET.urlencode(),
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def config_rollback_page(request: HttpRequest, agent_id: str) -> HttpResponse:
    """Every version of an agent's config, and a form to roll back to any earlier one."""
    _require(request)
    agent = _agent_or_none(agent_id)
    if agent is None:
        return render(request, "approvals/error.html", {"message": f"unknown agent {agent_id!r}"}, status=404)
    error = None
    if request.method == "POST":
        if not is_approver(request.user):
            raise PermissionDenied("only approvers roll back configs")
        try:
            to = int(request.POST.get("to", ""))
        except ValueError:
            error = "choose a version"
        else:
            try:
                version = config_rollback(
                    agent=agent,
                    to_version=to,
                    actor=request.user,
                    reason=request.POST.get("reason", ""),
                    now=timezone.now(),
                )
            except DomainError as exc:
                error = exc.message
            else:
                messages.success(request, f"v{version.number} is live, with the values of v{to}.")
                return redirect("config-rollback", agent_id=agent.agent_id)
    return render(
        request,
        "approvals/config_rollback.html",
        {
            "agent": agent,
            "versions": config_versions_list(agent=agent),
            "error": error,
            "can_rollback": is_approver(request.user),
        },
        status=400 if error else 200,
    )
