"""Pages for approvers: the proposals, the approval view with its decision form, the audit trail, rollback."""

from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from approvals.api import audit_csv
from approvals.audit_page import AUDIT_PAGE_SIZE, audit_events_filtered, audit_filters_parse
from approvals.discussion import proposal_comment, proposal_thread
from approvals.exceptions import NotADesignatedApprover
from approvals.guard import DECIDE, JUDGE, ROLL_BACK, allowances, approver_refusal, scope_note
from approvals.lock import agent_config_lock, agent_config_unlock
from approvals.models import AuditEvent, VersionWatch
from approvals.selectors import (
    proposal_approvals,
    proposal_clusters_shown,
    proposal_get,
    proposal_heading,
    proposal_view,
    proposal_watch,
    proposals_list,
    threshold_chart,
)
from approvals.services import config_rollback, proposal_create_manual, proposal_decide
from approvals.watchdog import (
    Assessment,
    change_author_id,
    rollback_target,
    watch_assess,
    watch_get,
    watch_mark_good,
    watch_rollback,
)
from loopsite.exceptions import DomainError, ValidationFailed
from loopsite.rules import rule
from people.roles import is_approver, is_staff
from rollouts.render import canary_render
from rollouts.selectors import canary_of, shadow_evidence
from rollouts.services import Rollout, canary_abort, canary_promote
from thresholds.models import Agent, ConfigVersion
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
        rows.append(
            {
                "p": p,
                "live_value": live_by_agent[p.agent_id].get(p.threshold_name),
                "heading": proposal_heading(proposal=p),
            }
        )
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
    view = proposal_view(proposal=proposal, now=timezone.now())
    chart = threshold_chart(agent=proposal.agent, threshold_name=proposal.threshold_name, now=timezone.now())
    watch_version, watch = proposal_watch(proposal=proposal)
    chart.update(
        {
            "threshold": proposal.threshold_name,
            "current": view.live_value,
            "proposed": view.heading.after if view.heading else proposal.proposed_value,
            "proposedLabel": "proposed" if proposal.status == Proposal.Status.PENDING else "decided",
        }
    )
    return {
        "view": view,
        "p": proposal,
        "chart": chart,
        "clusters": proposal_clusters_shown(proposal=proposal),
        **decide_context(request.user, proposal, view),
        "own_proposal": proposal.created_by_id is not None and proposal.created_by_id == request.user.pk,
        "watch_version": watch_version,
        "watch": watch,
        **rollout_context(request.user, proposal),
        **discussion_context(request.user, proposal, reverse("proposal-comment", args=[proposal.pk])),
    }


def rollout_context(user: Any, proposal: Proposal) -> dict[str, Any]:
    """The proposal's forward evidence (its shadow on live traffic) and its canary, if any, with whether ``user``
    may end the canary by hand."""
    canary = canary_of(proposal=proposal)
    return {
        "shadow": shadow_evidence(proposal=proposal),
        "canary": canary,
        "canary_view": canary_render(canary) if canary is not None else None,
        "canary_values": (
            (canary.version.values.get(canary.threshold_name), canary.control.values.get(canary.threshold_name))
            if canary is not None
            else None
        ),
        "can_end_canary": canary is not None
        and canary.serving
        and approver_refusal(user, DECIDE, agent=proposal.agent) is None
        and proposal.created_by_id != user.pk,
        "canary_defaults": {"share": round(float(rule("CANARY_SHARE")) * 100), "days": rule("CANARY_DAYS")},
    }


def _rollout_asked(post: Any) -> Rollout | None:
    """The decision form's canary option: a share in per cent and days, checked by ``Rollout.parse``."""
    if not post.get("canary"):
        return None
    raw: dict[str, Any] = {}
    for name, scale in (("share", 0.01), ("days", 1.0)):
        text = post.get(f"canary_{name}", "").strip()
        if text:
            try:
                raw[name] = float(text) * scale
            except ValueError:
                raise ValidationFailed(f"canary {name} must be a number", field=f"canary.{name}") from None
    return Rollout.parse(raw)


@login_required
@require_POST
def canary_end_page(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    """Promote or abort a proposal's serving canary by hand, from its page."""
    _require(request)
    canary = canary_of(proposal=proposal_get(proposal_id=pk))
    end = {"promote": canary_promote, "abort": canary_abort}.get(action)
    if canary is None or end is None:
        messages.error(request, "Nothing done: this proposal has no canary to end that way.")
        return redirect("proposal-detail", pk=pk)
    try:
        version = end(
            canary=canary, now=timezone.now(), actor=request.user, rationale=request.POST.get("rationale", "")
        )
    except DomainError as exc:
        messages.error(request, f"Nothing done: {exc.message}.")
        return redirect(reverse("proposal-detail", args=[pk]) + "#canary")
    done = (
        "promoted: its value is live for every session"
        if action == "promote"
        else "aborted: every session is back on the earlier value"
    )
    messages.success(request, f"Canary {done} (v{version.number if version else '?'}).")
    return redirect(reverse("proposal-detail", args=[pk]) + "#canary")


def discussion_context(user: Any, proposal: Proposal, comment_url: str) -> dict[str, Any]:
    """The discussion panel's context (the page's and the admin's)."""
    return {"thread": list(proposal_thread(proposal)), "comment_url": comment_url, "can_comment": is_approver(user)}


def comment_post(request: HttpRequest, pk: int) -> Proposal | None:
    """Record the comment a form posted (page or admin), with a message either way; the proposal, or None."""
    try:
        proposal = proposal_get(proposal_id=pk)
        proposal_comment(proposal=proposal, actor=request.user, text=request.POST.get("text", ""), now=timezone.now())
    except DomainError as exc:
        messages.error(request, f"Not posted: {exc.message}.")
        return None
    messages.success(request, "Comment posted; the agent's approvers are told.")
    return proposal


@login_required
@require_POST
def proposal_comment_page(request: HttpRequest, pk: int) -> HttpResponse:
    _require(request)
    comment_post(request, pk)
    return redirect(reverse("proposal-detail", args=[pk]) + "#discussion")


def decide_context(user: Any, proposal: Proposal, view: Any) -> dict[str, Any]:
    """Whether ``user`` may decide the proposal (the page's and the admin's form), why not, and their sign-off."""
    approvals = view.approvals
    return {
        "can_decide": approver_refusal(user, DECIDE, agent=proposal.agent) is None
        and proposal.status == Proposal.Status.PENDING
        and proposal.created_by_id != user.pk,
        "decide_note": scope_note(user, DECIDE, agent=proposal.agent),
        "my_approval": approvals.signed_by(user) if approvals is not None else None,
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
        form.update(
            canary=request.POST.get("canary", ""),
            canary_share=request.POST.get("canary_share", ""),
            canary_days=request.POST.get("canary_days", ""),
        )
        if error is None:
            try:
                decided = proposal_decide(
                    proposal=proposal,
                    actor=request.user,
                    decision=form["decision"],
                    rationale=form["rationale"],
                    value=value,
                    now=timezone.now(),
                    canary=_rollout_asked(request.POST),
                )
            except DomainError as exc:
                error = exc
            else:
                live = config_get_live(agent=decided.agent)
                if decided.status == Proposal.Status.PENDING:
                    needed = proposal_approvals(proposal=decided).needed
                    messages.success(
                        request,
                        f"Your approval is recorded: {needed} more needed from other approvers before "
                        f"{decided.threshold_name} changes.",
                    )
                elif decided.status == Proposal.Status.REJECTED:
                    messages.success(request, f"Rejected: {decided.threshold_name} stays as it is.")
                elif decided.status == Proposal.Status.CANARY and live.canary is not None:
                    messages.success(
                        request,
                        f"Canary started: {decided.threshold_name} is {decided.decided_value:g} for "
                        f"{live.canary.share:.0%} of sessions (v{live.canary.version}); the others stay on "
                        f"v{live.version}. The watchdog compares the two every hour.",
                    )
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
    now = timezone.now()
    for a in agents:
        live = config_get_live(agent=a).thresholds
        definitions = threshold_definitions(agent=a)
        every = allowances(agent=a, now=now, definitions=definitions.values())
        for name in definitions:
            thresholds.append({"agent": a.agent_id, "name": name, "value": live.get(name), "allowed": every[name]})
    return render(
        request,
        "approvals/proposal_new.html",
        {"agents": agents, "thresholds": thresholds, "form": form, "error": error},
        status=400 if error else 200,
    )


@login_required
def audit_trail(request: HttpRequest) -> HttpResponse:
    """Newest first, ``AUDIT_PAGE_SIZE`` a page; ``?export=csv`` gives every event the filters let through."""
    _require(request)
    filters = audit_filters_parse(request.GET)
    events = audit_events_filtered(filters=filters)
    agent = filters.agent
    if request.GET.get("export") == "csv":
        return audit_csv(events, f"audit-{agent.agent_id if agent else 'all'}.csv")
    page = Paginator(events.reverse(), AUDIT_PAGE_SIZE).get_page(request.GET.get("page"))
    names: list[str] = sorted(threshold_definitions(agent=agent)) if agent else []
    query = urlencode(filters.as_query())
    return render(
        request,
        "approvals/audit_trail.html",
        {
            "page": page,
            "events": page.object_list,
            "agents": Agent.objects.all(),
            "agent": agent,
            "filters": filters,
            "kinds": AuditEvent.Kind.choices,
            "threshold": filters.threshold,
            "threshold_names": names,
            "query": query,
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
    error: DomainError | None = None
    if request.method == "POST":
        if not is_approver(request.user):
            raise PermissionDenied("only approvers roll back configs")
        try:
            to = int(request.POST.get("to", ""))
        except ValueError:
            error = DomainError("choose a version", field="to")
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
                error = exc
            else:
                messages.success(request, f"v{version.number} is live, with the values of v{to}.")
                return redirect("config-rollback", agent_id=agent.agent_id)
    return render(
        request,
        "approvals/config_rollback.html",
        {
            "agent": agent,
            "versions": config_versions_list(agent=agent),
            "error": error.message if error else None,
            "can_rollback": approver_refusal(request.user, ROLL_BACK, agent=agent) is None,
            "rollback_note": scope_note(request.user, ROLL_BACK, agent=agent),
        },
        status=error.status_code if error else 200,
    )


@login_required
@require_http_methods(["POST"])
def config_lock_page(request: HttpRequest, agent_id: str) -> HttpResponse:
    """Lock or unlock an agent's config from its dashboard; the answer is a message there."""
    agent = _agent_or_none(agent_id)
    if agent is None:
        return render(request, "approvals/error.html", {"message": f"unknown agent {agent_id!r}"}, status=404)
    if not is_approver(request.user):
        raise PermissionDenied("only approvers lock and unlock an agent's config")
    service = agent_config_unlock if request.POST.get("action") == "unlock" else agent_config_lock
    try:
        done = service(agent=agent, actor=request.user, rationale=request.POST.get("rationale", ""), now=timezone.now())
    except NotADesignatedApprover as exc:
        return render(request, "approvals/error.html", {"message": exc.message}, status=exc.status_code)
    except DomainError as exc:
        messages.error(request, f"Nothing changed: {exc.message}.")
    else:
        if done.is_locked:
            messages.success(
                request, f"{agent.agent_id}'s config is locked: the tuner proposes nothing until it is unlocked."
            )
        else:
            messages.success(request, f"{agent.agent_id}'s config is unlocked: the next tuner cycle may propose again.")
    return redirect("dashboard-agent", agent_id=agent.agent_id)


def _version_changes(version: ConfigVersion) -> list[dict[str, Any]]:
    """What a version changed against the one before it."""
    before = ConfigVersion.objects.filter(agent=version.agent, number__lt=version.number).order_by("-number").first()
    old = before.values if before is not None else {}
    return [
        {"name": k, "before": old.get(k), "after": version.values.get(k)}
        for k in sorted(set(old) | set(version.values))
        if old.get(k) != version.values.get(k)
    ]


@login_required
@require_http_methods(["GET", "POST"])
def version_watch_page(request: HttpRequest, agent_id: str, number: int) -> HttpResponse:
    """One watched change: the watchdog's verdict and figures, and an approver's mark good / roll back."""
    _require(request)
    agent = _agent_or_none(agent_id)
    if agent is None:
        return render(request, "approvals/error.html", {"message": f"unknown agent {agent_id!r}"}, status=404)
    now = timezone.now()
    try:
        watch = watch_get(agent=agent, number=number, now=now)
    except DomainError as exc:
        return render(request, "approvals/error.html", {"message": exc.message}, status=exc.status_code)
    error: DomainError | None = None
    form = {"action": request.POST.get("action", ""), "rationale": request.POST.get("rationale", "")}
    if request.method == "POST":
        if not is_approver(request.user):
            raise PermissionDenied("only approvers judge a watched change")
        try:
            if form["action"] == "good":
                watch_mark_good(watch=watch, actor=request.user, rationale=form["rationale"], now=now)
                messages.success(request, f"v{number} is marked good: the watchdog no longer watches it.")
            elif form["action"] == "rollback":
                rollback = watch_rollback(watch=watch, actor=request.user, rationale=form["rationale"], now=now)
                messages.success(
                    request, f"Rolled back: v{rollback.number} is live with the values of v{rollback_target(rollback)}."
                )
            else:
                raise DomainError("choose mark good or roll back", field="action")
        except DomainError as exc:
            error = exc
            watch = watch_get(agent=agent, number=number, now=now)
        else:
            return redirect("version-watch", agent_id=agent.agent_id, number=number)
    assessment: Assessment | None
    if watch.state == VersionWatch.State.WATCHING:
        assessment, _ = watch_assess(watch=watch, now=now)  # fresh figures; the pass stores them hourly
    else:
        assessment = Assessment.from_dict(watch.assessment)
    open_ = watch.state != VersionWatch.State.ROLLED_BACK
    context = {
        "agent": agent,
        "watch": watch,
        "version": watch.version,
        "proposal": watch.version.proposal,
        "changes": _version_changes(watch.version),
        "assessment": assessment,
        "can_judge": approver_refusal(request.user, JUDGE, agent=agent) is None and open_,
        "judge_note": scope_note(request.user, JUDGE, agent=agent),
        "can_mark_good": watch.state in (VersionWatch.State.WATCHING, VersionWatch.State.INCONCLUSIVE),
        "own_change": change_author_id(watch.version) == request.user.pk,
        "error": error.message if error else None,
        "form": form,
        "now": now,
    }
    return render(request, "approvals/version_watch.html", context, status=error.status_code if error else 200)
