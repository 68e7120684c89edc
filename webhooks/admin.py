"""Webhooks are managed by admins (superusers) only; their deliveries are read-only, with a re-send action."""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from webhooks.events import EVENT_CHOICES
from webhooks.models import Webhook, WebhookDelivery
from webhooks.services import delivery_resend, webhook_test_send


class _SuperusersOnly:
    """Only superusers see or change these models, whatever model permissions a staff member holds."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.is_superuser)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_module_permission(request)

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return self.has_module_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_module_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_module_permission(request)


class WebhookForm(forms.ModelForm):
    events = forms.MultipleChoiceField(choices=EVENT_CHOICES, widget=forms.CheckboxSelectMultiple)

    class Meta:
        model = Webhook
        fields = ["name", "agent", "url", "secret", "events", "format", "active"]


@admin.register(Webhook)
class WebhookAdmin(_SuperusersOnly, admin.ModelAdmin):
    form = WebhookForm
    list_display = ("name", "scope", "url", "format", "active", "event_list", "created_at")
    list_filter = ("active", "format", "agent")
    search_fields = ("name", "url")
    actions = ["send_test_event"]

    @admin.display(description="agent")
    def scope(self, obj: Webhook) -> str:
        return obj.agent.agent_id if obj.agent is not None else "all agents"

    @admin.display(description="events")
    def event_list(self, obj: Webhook) -> str:
        return ", ".join(obj.events or [])

    @admin.action(description="Send a test event")
    def send_test_event(self, request: HttpRequest, queryset: QuerySet[Webhook]) -> None:
        who = getattr(request.user, "username", "") or "an admin"
        for webhook in queryset:
            webhook_test_send(webhook=webhook, actor_label=who, now=timezone.now())
        self.message_user(request, f"{queryset.count()} test event(s) queued; see Webhook deliveries for the result.")


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(_SuperusersOnly, admin.ModelAdmin):
    """What was sent where, and how it went. Read-only, but a delivery can be sent again."""

    list_display = (
        "delivery_id",
        "event",
        "webhook",
        "status",
        "attempts",
        "last_status_code",
        "last_error",
        "created_at",
        "next_attempt_at",
        "delivered_at",
    )
    list_filter = ("status", "event", "webhook")
    search_fields = ("delivery_id",)
    readonly_fields = [f.name for f in WebhookDelivery._meta.fields]
    list_select_related = ("webhook",)
    actions = ["resend"]

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description="Re-send the selected deliveries")
    def resend(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        count = 0
        for delivery in queryset:
            delivery_resend(delivery=delivery, now=timezone.now())
            count += 1
        self.message_user(
            request, f"{count} deliver{'ies' if count != 1 else 'y'} queued to be sent again.", messages.SUCCESS
        )
