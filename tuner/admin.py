"""Runs and clusters browsable in the admin. Proposals are registered by the approvals app."""

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from tuner.models import Cluster, TunerRun


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
