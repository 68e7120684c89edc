from django.contrib import admin

from loopsite.models import OutboxMessage

# The admin is loopsite's: its name on every page, and "View site" goes to the dashboard. templates/admin/
# base_site.html adds links to the queue, the proposals and the audit trail.
admin.site.site_header = "loopsite administration"
admin.site.site_title = "loopsite admin"
admin.site.index_title = "Agents, proposals, config versions and the audit trail"
admin.site.site_url = "/dashboard/"


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
