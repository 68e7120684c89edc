from django.contrib import admin

from loopsite.models import OutboxMessage


@admin.register(OutboxMessage)
class OutboxMessageAdmin(admin.ModelAdmin):
    """Read-only: what is waiting to be delivered after a broker, mail or cache outage, and why."""

    list_display = ("id", "handler", "status", "attempts", "created_at", "available_at", "sent_at", "last_error")
    list_filter = ("status", "handler")
    readonly_fields = [f.name for f in OutboxMessage._meta.fields]

    def has_add_permission(self, request: object) -> bool:
        return False

    def has_change_permission(self, request: object, obj: object = None) -> bool:
        return False
