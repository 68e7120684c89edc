"""The approval view in the admin (as the design calls for) and the read-only audit trail.

A proposal's change page shows the same approval panel and chart as the approvers' page, with a decision form
that goes through ``proposal_decide``: the admin edits no proposal field directly.
"""

from typing import Any

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from approvals.guard import agents_in_scope
from approvals.models import AuditEvent
from approvals.selectors import proposal_view, threshold_chart
from approvals.services import proposal_decide
from approvals.views import comment_post, decide_context, discussion_context
from loopsite.exceptions import DomainError
from thresholds.selectors import config_get_live
from tuner.models import Proposal, ProposalEvidence


class _ReadOnly:
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(_ReadOnly, admin.ModelAdmin):  # type: ignore[misc]
    list_display = ["at", "kind", "agent", "threshold_name", "actor_label", "before", "after", "proposal", "message"]
    list_filter = ["kind", "agent"]
    search_fields = ["threshold_name", "actor_label", "message"]
    date_hierarchy = "at"
    ordering = ["-at", "-id"]


class ProposalEvidenceInline(_ReadOnly, admin.TabularInline):  # type: ignore[misc]
    model = ProposalEvidence
    fields = readonly_fields = ("entry_id", "kind", "is_sample")
    extra = 0


@admin.register(Proposal)
class ProposalAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "agent",
        "threshold_name",
        "current_value",
        "live_value",
        "proposed_value",
        "confidence",
        "evidence_count",
        "risk_flagged",
        "status",
        "created_at",
        "decided_by",
    ]
    list_filter = ["status", "agent", "confidence", "risk_flagged"]
    search_fields = ["threshold_name", "rationale"]
    readonly_fields = [f.name for f in Proposal._meta.fields]
    inlines = [ProposalEvidenceInline]
    change_form_template = "approvals/admin/proposal_change_form.html"

    @admin.display(description="live value")
    def live_value(self, obj: Proposal) -> float | None:
        return config_get_live(agent=obj.agent).thresholds.get(obj.threshold_name)

    def get_queryset(self, request: HttpRequest) -> Any:
        """The list holds the proposals of the agents the user may decide (approvals.guard.agents_in_scope). A
        proposal opened by its link still shows, with the sentence that says who may decide it."""
        rows = super().get_queryset(request).select_related("agent", "decided_by")
        match = getattr(request, "resolver_match", None)
        if match is not None and str(match.url_name).endswith("_changelist"):
            rows = rows.filter(agent__in=agents_in_scope(request.user))
        return rows

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # manual proposals go through the approvers' page, which checks the rules

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # decided through the form above the fields, never by editing them

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        decide = path("<int:pk>/decide/", self.admin_site.admin_view(self.decide_view), name="tuner_proposal_decide")
        comment = path(
            "<int:pk>/comment/", self.admin_site.admin_view(self.comment_view), name="tuner_proposal_comment"
        )
        return [decide, comment, *super().get_urls()]

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        proposal = get_object_or_404(Proposal.objects.select_related("agent", "run"), pk=object_id)
        chart = threshold_chart(agent=proposal.agent, threshold_name=proposal.threshold_name, now=timezone.now())
        view = proposal_view(proposal=proposal, now=timezone.now())
        chart.update(
            {"threshold": proposal.threshold_name, "current": view.live_value, "proposed": proposal.proposed_value}
        )
        context = {
            **(extra_context or {}),
            "view": view,
            "chart": chart,
            **decide_context(request.user, proposal, view),
            "decide_url": reverse("admin:tuner_proposal_decide", args=[proposal.pk]),
            **discussion_context(request.user, proposal, reverse("admin:tuner_proposal_comment", args=[proposal.pk])),
        }
        return super().change_view(request, object_id, form_url, extra_context=context)

    @staticmethod
    @require_POST
    def comment_view(request: HttpRequest, pk: int) -> HttpResponse:
        comment_post(request, pk)
        return HttpResponseRedirect(reverse("admin:tuner_proposal_change", args=[pk]) + "#discussion")

    @staticmethod
    @require_POST
    def decide_view(request: HttpRequest, pk: int) -> HttpResponse:
        proposal = get_object_or_404(Proposal, pk=pk)
        raw_value = request.POST.get("value", "").strip()
        try:
            value = float(raw_value) if request.POST.get("decision") == "modify" and raw_value else None
            decided = proposal_decide(
                proposal=proposal,
                actor=request.user,
                decision=request.POST.get("decision", ""),
                rationale=request.POST.get("rationale", ""),
                value=value,
                now=timezone.now(),
            )
        except ValueError:
            messages.error(request, "value must be a number")
        except DomainError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, f"Proposal #{decided.pk} {decided.status}.")
        return HttpResponseRedirect(reverse("admin:tuner_proposal_change", args=[pk]))
