"""Canaries in the admin: read only. They start from a proposal's decision and end through the watchdog or the
proposal's page (rollouts.services), which audit every step; the admin never edits one."""

from typing import Any

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from rollouts.models import Canary


@admin.register(Canary)
class CanaryAdmin(admin.ModelAdmin):
    list_display = ["agent", "threshold_name", "share", "version", "control", "state", "started_at", "ends_at", "page"]
    list_filter = ["state", "agent"]
    ordering = ["-started_at"]

    def get_readonly_fields(self, request: Any, obj: Any = None) -> list[str]:
        return [f.name for f in Canary._meta.fields]

    def has_add_permission(self, request: Any) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    @admin.display(description="Proposal page")
    def page(self, obj: Canary) -> str:
        return format_html(
            '<a href="{}#canary">proposal #{}</a>', reverse("proposal-detail", args=[obj.proposal_id]), obj.proposal_id
        )
