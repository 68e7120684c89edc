"""Runs and clusters browsable in the admin, and each agent's miss reference (editable: the period). Proposals
are registered by the approvals app."""

from typing import Any

from django.contrib import admin
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from tuner.models import Cluster, MissReference, TunerRun


class _ReadOnly:
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ClusterInline(_ReadOnly, admin.TabularInline):  # type: ignore[type-arg]
    model = Cluster
    extra = 0
    fields = ("kind", "label", "size", "share", "thresholds", "confidence_min", "confidence_max", "rules")
    readonly_fields = fields
    show_change_link = True


@admin.register(TunerRun)
class TunerRunAdmin(_ReadOnly, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("agent", "cycle", "status", "generator", "health", "proposal_count", "duration_seconds")
    list_filter = ("status", "generator", "agent")
    date_hierarchy = "created_at"
    search_fields = ("agent__agent_id",)
    readonly_fields = [f.name for f in TunerRun._meta.fields]
    inlines = [ClusterInline]

    @admin.display(description="system health")
    def health(self, run: TunerRun) -> str:
        return str((run.output or {}).get("systemHealth", "-"))

    @admin.display(description="proposals")
    def proposal_count(self, run: TunerRun) -> int:
        return len((run.output or {}).get("proposals", []))


@admin.register(Cluster)
class ClusterAdmin(_ReadOnly, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("run", "kind", "label", "size", "share", "confidence_min", "confidence_max")
    list_filter = ("kind", "run__agent")
    readonly_fields = [f.name for f in Cluster._meta.fields]


@admin.register(MissReference)
class MissReferenceAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """An engineer may set the period the miss budget is measured against (contract rule 10). Saving clears the
    figures: the next cycle measures the new period. The change is in the audit trail."""

    list_display = ("agent", "period_start", "period_end", "set_by", "measured_at")
    list_filter = ("agent",)
    fields = ("agent", "period_start", "period_end", "note", "set_by", "figures", "measured_at")
    readonly_fields = ("set_by", "figures", "measured_at")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return (*self.readonly_fields, "agent") if obj is not None else self.readonly_fields

    def save_model(self, request: HttpRequest, obj: MissReference, form: Any, change: bool) -> None:
        from approvals.audit import audit_record

        before = None
        if obj.pk is not None:
            old = MissReference.objects.get(pk=obj.pk)
            before = {"start": old.period_start.isoformat(), "end": old.period_end.isoformat()}
        obj.set_by = request.user if request.user.is_authenticated else None  # type: ignore[assignment]
        obj.figures = {}
        obj.measured_at = obj.measured_start = obj.measured_end = None
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            audit_record(
                kind="reference.set",
                agent=obj.agent,
                at=timezone.now(),
                actor=request.user,
                before=before,
                after={"start": obj.period_start.isoformat(), "end": obj.period_end.isoformat()},
                message=f"miss reference period set to {obj.label}: {obj.note}"[:2000],
            )
