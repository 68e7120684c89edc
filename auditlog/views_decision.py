"""One decision's page: the entry as logged, its current label and every answer it was given, and a form to
change the answer (its author within the window, an approver any time), through the same service as the API."""

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from auditlog.entry import RESPONSE_ACTIONS
from auditlog.render import entry_render
from auditlog.services import decision_get, response_history, response_record
from auditlog.views_queue import reviewer_required
from loopsite.exceptions import DomainError


@require_http_methods(["GET", "POST"])
@reviewer_required
def decision_page(request: HttpRequest, entry_id: str) -> HttpResponse:
    try:
        decision = decision_get(entry_id=entry_id)
    except DomainError as exc:
        return render(request, "approvals/error.html", {"message": exc.message}, status=404)
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
            return redirect("decision-page", entry_id=entry_id)
    context = {
        "d": decision,
        "entry": entry_render(decision),
        "history": response_history(decision),
        "actions": RESPONSE_ACTIONS,
        "agent_actions": list(decision.agent.actions),
        "error": error,
    }
    return render(request, "auditlog/decision.html", context, status=400 if error else 200)
