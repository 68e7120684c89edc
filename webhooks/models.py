"""Webhooks (where to send which loop events) and their deliveries (one event to one webhook, with its attempts)."""

import secrets
import uuid

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import models
from django.utils import timezone

from webhooks.events import EVENTS


def secret_default() -> str:
    return secrets.token_hex(32)


class Webhook(models.Model):
    class Format(models.TextChoices):
        JSON = "json", "JSON event (id, event, summary, url, data)"
        CHAT = "chat", 'Chat message ({"text": summary and link}, for incoming-webhook URLs)'

    name = models.CharField(max_length=100)
    agent = models.ForeignKey(
        "thresholds.Agent",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="webhooks",
        help_text="Empty: a global webhook, for every agent's events.",
    )
    url = models.CharField(
        max_length=500,
        validators=[URLValidator(schemes=["http", "https"])],
        help_text="Where the events are POSTed: an http:// or https:// URL.",
    )
    secret = models.CharField(
        max_length=200,
        default=secret_default,
        help_text="Signs every body (X-Loopsite-Signature: sha256=HMAC-SHA256 of the body with this secret).",
    )
    events = models.JSONField(default=list, blank=True, help_text="The events this webhook receives.")
    format = models.CharField(max_length=8, choices=Format.choices, default=Format.JSON)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.agent.agent_id if self.agent is not None else 'all agents'})"

    def clean(self) -> None:
        super().clean()
        unknown = sorted(set(self.events or []) - set(EVENTS)) if isinstance(self.events, list) else ["?"]
        if unknown:
            raise ValidationError({"events": f"unknown events: {', '.join(map(str, unknown))}"})
        if not self.events:
            raise ValidationError({"events": "choose at least one event"})


class WebhookDelivery(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        DELIVERED = "delivered"
        FAILED = "failed"

    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=32)
    delivery_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    payload = models.JSONField(help_text="The JSON event; the chat format is rendered from it when sent.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    history = models.JSONField(default=list, blank=True, help_text="Each attempt: when, status code, error.")
    next_attempt_at = models.DateTimeField(
        null=True, blank=True, help_text="Pending: not tried before this time (empty: at once)."
    )
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "webhook deliveries"
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="webhook_delivery_due")]

    def __str__(self) -> str:
        return f"{self.event} to {self.webhook.name} ({self.status})"
