"""The decision log in the admin: searchable and filterable, never editable (it is the record)."""

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, StreamingHttpResponse

from auditlog.evaluation import CONTENT_TYPES, evaluation_stream
from auditlog.models import Decision, DecisionKey
from thresholds.models import Agent


class ActionFilter(admin.SimpleListFilter):
    """The agents' declared actions, rather than a DISTINCT over the whole log on every page view."""

    title = "action"
    parameter_name = "action"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        names = {str(a) for actions in Agent.objects.values_list("actions", flat=True) for a in actions}
        return [(name, name) for name in sorted(names)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(action=self.value()) if self.value() else queryset


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Decision)
class DecisionAdmin(ReadOnlyAdmin):
    list_display = [
        "entry_id",
        "agent",
        "timestamp",
        "action",
        "confidence",
        "threshold_name",
        "threshold_used",
        "config_version",
        "queued",
        "response_action",
        "responder_id",
    ]
    list_filter = ["agent", ActionFilter, "response_action", "queued", "review_reason"]
    search_fields = ["=entry_id", "=session_id", "=input_hash"]
    search_help_text = "An entry id, session id or input hash, exactly."
    date_hierarchy = "timestamp"
    list_select_related = ["agent", "config_version"]
    # Counting a large log on every page view is slow; the paginator shows "more" instead.
    show_full_result_count = False
    fieldsets = [
        (None, {"fields": ["entry_id", "agent", "session_id", "timestamp", "received_at", "config_version"]}),
        ("Decision", {"fields": ["action", "confidence", "threshold_name", "threshold_used", "reasoning"]}),
        ("Context", {"fields": ["input_hash", "features", "matched_rules"]}),
        ("Review", {"fields": ["queued", "review_reason", "claimed_by", "claimed_until"]}),
        (
            "Human response",
            {
                "fields": [
                    "response_action",
                    "modified_action",
                    "responder_id",
                    "responded_at",
                    "time_to_respond",
                    "response_note",
                    "response_source",
                ]
            },
        ),
    ]
    readonly_fields = [str(f) for _, opts in fieldsets for f in opts["fields"]]
    actions = ["export_evaluation_csv"]

    @admin.action(description="Export the selected reviewed decisions with their label (CSV evaluation set)")
    def export_evaluation_csv(self, request: HttpRequest, queryset: QuerySet[Decision]) -> StreamingHttpResponse:
        rows = queryset.filter(response_action__isnull=False)
        response = StreamingHttpResponse(evaluation_stream(rows, "csv"), content_type=CONTENT_TYPES["csv"])
        response["Content-Disposition"] = 'attachment; filename="evaluation-set.csv"'
        return response


@admin.register(DecisionKey)
class DecisionKeyAdmin(ReadOnlyAdmin):
    list_display = ["entry_id", "agent_id", "timestamp", "content_hash"]
    search_fields = ["=entry_id"]
    date_hierarchy = "timestamp"
    show_full_result_count = False
    fields = readonly_fields = ("entry_id", "agent_id", "timestamp", "content_hash")
