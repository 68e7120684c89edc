"""One decision's page: the entry as logged, its current label and every answer it was given, and a form to
change the answer (its author within the window, an approver any time), through the same service as the API.

Ids are unique per agent, so the page takes ``?agentId=``; without it an id used by one agent is that agent's,
and one used by several gets 409 asking for it. Every link the app makes to this page carries it.
"""

from urllib.parse import urlencode

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from auditlog.entry import RESPONSE_ACTIONS
from auditlog.render import entry_render
from auditlog.selectors import decision_read
from auditlog.services import response_history, response_record
from auditlog.views_queue import reviewer_required
from loopsite.exceptions import DomainError


def decision_page_url(*, entry_id: str, agent_id: str) -> str:
    """The address of one agent's decision."""
    return reverse("decision-page", args=[entry_id]) + "?" + urlencode({"agentId": agent_id})


@require_http_methods(["GET", "POST"])
@reviewer_required
def decision_page(request: HttpRequest, entry_id: str) -> HttpResponse:
    try:
        decision = decision_read(entry_id=entry_id, agent_id=request.GET.get("agentId") or None)
    except DomainError as exc:
        # 404 for an unknown id, 409 for one several agents use (the message names them and agentId).
        return render(request, "approvals/error.html", {"message": exc.message}, status=exc.status_code)
    agent_id = decision.agent.agent_id
    error = None
    if request.method == "POST":
        raw = {"action": request.POST.get("action", "")}
        if request.POST.get("modified_action"):
            raw["modifiedAction"] = request.POST["modified_action"]
        if request.POST.get("note", "").strip():
            raw["note"] = request.POST["note"].strip()
        try:
            response_record(
                entry_id=entry_id,
                agent_id=agent_id,
                raw=raw,
                responder_id=request.user.get_username(),
                now=timezone.now(),
                source="web",
                field_prefix="",
                amends=decision.response_action is not None,
                actor=request.user,
            )
        except DomainError as exc:
            error = exc.message
        else:
            messages.success(request, f"{entry_id}: the answer is now {raw['action']}.")
            return redirect(decision_page_url(entry_id=entry_id, agent_id=agent_id))
    context = {
        "d": decision,
        "entry": entry_render(decision),
        "history": response_history(decision),
        "actions": RESPONSE_ACTIONS,
        "agent_actions": list(decision.agent.actions),
        "error": error,
    }
    return render(request, "auditlog/decision.html", context, status=400 if error else 200)
