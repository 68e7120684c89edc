"""Personal tokens in the admin: who holds one, when it was made and last used. The hash never shows."""

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from people.models import PersonalToken
from people.services import token_revoke


class RevokedFilter(admin.SimpleListFilter):
    """Active or revoked, for token-like rows with a ``revoked_at`` timestamp."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("active", "Active"), ("revoked", "Revoked")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "active":
            return queryset.filter(revoked_at=None)
        if self.value() == "revoked":
            return queryset.exclude(revoked_at=None)
        return queryset


@admin.register(PersonalToken)
class PersonalTokenAdmin(admin.ModelAdmin):
    list_display = ["prefix", "user", "name", "created_at", "last_used_at", "revoked_at"]
    list_filter = [RevokedFilter, "created_at"]
    search_fields = ["prefix", "name", "user__username", "user__email"]
    list_select_related = ["user"]
    fields = readonly_fields = ("user", "name", "prefix", "created_at", "last_used_at", "revoked_at")
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # a token is shown once when made: `manage.py create_token USERNAME`

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request: HttpRequest, queryset: QuerySet[PersonalToken]) -> None:
        count = token_revoke(tokens=queryset, now=timezone.now())
        self.message_user(request, f"Revoked {count} token(s).", messages.SUCCESS)
