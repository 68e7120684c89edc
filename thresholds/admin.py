"""Agents, their thresholds, config versions and keys in the admin.

Config versions are read-only: a change is a new version made by the approval gate or a rollback, never an edit.
Threshold definitions can have their bounds and description edited, not be added or removed, because every
threshold needs a value in the live config version.
"""

import logging
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone

from loopsite.exceptions import DomainError
from people.admin import RevokedFilter
from people.authentication import agent_keys_changed
from thresholds.models import Agent, AgentKey, ConfigVersion, ThresholdDefinition
from thresholds.selectors import config_cache_clear

logger = logging.getLogger(__name__)


class ReadOnlyMixin:
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ThresholdDefinitionInline(admin.TabularInline):
    model = ThresholdDefinition
    fields = ["name", "action", "min_value", "max_value", "rule", "score_feature", "description"]
    readonly_fields = ["name", "action"]
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ConfigVersionInline(ReadOnlyMixin, admin.TabularInline):  # type: ignore[misc]
    model = ConfigVersion
    fk_name = "agent"
    fields = readonly_fields = (
        "number",
        "is_live",
        "source",
        "values",
        "approved_by",
        "reason",
        "activated_at",
        "superseded_at",
    )
    extra = 0
    show_change_link = True
    ordering = ["-number"]


class AgentForm(forms.ModelForm):
    """The approval gate's rule on designated approvers and required approvals, as the admin's form errors."""

    class Meta:
        model = Agent
        fields = ["approvers", "required_approvals"]  # the admin adds the rest of its fieldsets

    def clean(self) -> dict[str, Any]:
        from approvals.guard import designation_check

        data = super().clean() or {}
        if "approvers" in data and "required_approvals" in data:
            try:
                designation_check(approvers=list(data["approvers"]), required=data["required_approvals"])
            except DomainError as exc:
                field = "required_approvals" if exc.field == "requiredApprovals" else "approvers"
                self.add_error(field, exc.message)
        return data


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    list_display = [
        "agent_id",
        "name",
        "action_order",
        "live_version",
        "review_sample_rate",
        "timezone",
        "binary_mode",
        "objective",
        "created_at",
    ]
    list_filter = ["binary_mode", "rule_based", "objective", "timezone"]
    search_fields = ["agent_id", "name"]
    readonly_fields = ["agent_id", "actions", "created_at"]
    filter_horizontal = ["approvers"]
    inlines = [ThresholdDefinitionInline, ConfigVersionInline]
    fieldsets = [
        (None, {"fields": ["agent_id", "name", "actions", "created_at"]}),
        ("Review", {"fields": ["review_sample_rate", "binary_mode", "timezone"]}),
        ("Approval", {"fields": ["approvers", "required_approvals"]}),
        ("Tuner", {"fields": ["rule_based", "window_weeks", "objective", "miss_cost"]}),
    ]

    form = AgentForm
    actions = ["open_lock_page", "open_rollback_page"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # an agent needs thresholds, a first config version and a key: `manage.py create_agent`

    # Lock and rollback need a rationale and go through their services: the actions open the pages that ask.
    @admin.action(description="Lock or unlock the config (opens its page)")
    def open_lock_page(self, request: HttpRequest, queryset: QuerySet[Agent]) -> HttpResponseRedirect | None:
        return self._one_page(request, queryset, "config-lock")

    @admin.action(description="Roll back the config (opens its page)")
    def open_rollback_page(self, request: HttpRequest, queryset: QuerySet[Agent]) -> HttpResponseRedirect | None:
        return self._one_page(request, queryset, "config-rollback")

    def _one_page(self, request: HttpRequest, queryset: QuerySet[Agent], name: str) -> HttpResponseRedirect | None:
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one agent.", level=messages.WARNING)
            return None
        return HttpResponseRedirect(reverse(name, args=[queryset.get().agent_id]))

    @admin.display(description="actions")
    def action_order(self, obj: Agent) -> str:
        return " < ".join(str(a) for a in obj.actions)

    @admin.display(description="live version")
    def live_version(self, obj: Agent) -> str:
        live = next((v for v in obj.config_versions.all() if v.is_live), None)
        return f"v{live.number}" if live else "-"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Agent]:
        return super().get_queryset(request).prefetch_related("config_versions")

    # The admin saves the agent, then its approvers and inlines, in one transaction: the rules are read before
    # the first and the audit row written after the last (contract rule 9: rule changes are audited).
    def save_model(self, request: HttpRequest, obj: Agent, form: Any, change: bool) -> None:
        from approvals.rule_changes import rules_snapshot

        request._rules_before = rules_snapshot(obj) if change else None  # type: ignore[attr-defined]
        super().save_model(request, obj, form, change)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        from approvals.rule_changes import rule_changes_record

        super().save_related(request, form, formsets, change)
        before = getattr(request, "_rules_before", None)
        if before is not None:
            rule_changes_record(agent=form.instance, before=before, actor=request.user, at=timezone.now(), via="admin")
        config_cache_clear(agent=form.instance)


@admin.register(ThresholdDefinition)
class ThresholdDefinitionAdmin(admin.ModelAdmin):
    list_display = ["__str__", "agent", "name", "action", "min_value", "max_value"]
    list_filter = ["agent"]
    search_fields = ["name", "agent__agent_id", "description"]
    list_select_related = ["agent"]
    readonly_fields = ["agent", "name", "action"]
    fields = ["agent", "name", "action", "min_value", "max_value", "description"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: ThresholdDefinition, form: Any, change: bool) -> None:
        from approvals.rule_changes import rule_changes_record, rules_snapshot

        before = rules_snapshot(obj.agent)
        super().save_model(request, obj, form, change)
        rule_changes_record(agent=obj.agent, before=before, actor=request.user, at=timezone.now(), via="admin")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ConfigVersion)
class ConfigVersionAdmin(ReadOnlyMixin, admin.ModelAdmin):  # type: ignore[misc]
    list_display = [
        "__str__",
        "agent",
        "number",
        "is_live",
        "source",
        "approved_by",
        "proposal",
        "activated_at",
        "superseded_at",
    ]
    list_filter = ["is_live", "source", "agent"]
    search_fields = ["agent__agent_id", "reason"]
    list_select_related = ["agent", "approved_by", "proposal"]
    date_hierarchy = "activated_at"
    fields = readonly_fields = (
        "agent",
        "number",
        "is_live",
        "values",
        "source",
        "proposal",
        "rolled_back_version",
        "approved_by",
        "reason",
        "activated_at",
        "superseded_at",
    )


@admin.register(AgentKey)
class AgentKeyAdmin(admin.ModelAdmin):
    list_display = ["prefix", "agent", "name", "created_at", "last_used_at", "revoked_at"]
    list_filter = [RevokedFilter, "agent"]
    search_fields = ["prefix", "name", "agent__agent_id"]
    list_select_related = ["agent"]
    fields = readonly_fields = ("agent", "name", "prefix", "created_at", "last_used_at", "revoked_at")
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # a key is shown once when made: `manage.py create_agent`

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description="Revoke the selected keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[AgentKey]) -> None:
        pks = list(queryset.filter(revoked_at=None).values_list("pk", flat=True))
        count = AgentKey.objects.filter(pk__in=pks, revoked_at=None).update(revoked_at=timezone.now())
        agent_keys_changed()  # every process stops accepting them at once
        logger.info("agent_key.revoked", extra={"key_ids": pks, "count": count})
        self.message_user(request, f"Revoked {count} key(s).", messages.SUCCESS)
