"""The outbox: work to do after a commit (an email, a task for the broker, a cache key to drop), kept in the
database with the change that caused it, so that a broker, mail server or cache that is down loses none of it."""

from django.db import models
from django.utils import timezone


class OutboxMessage(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        SENT = "sent"

    handler = models.CharField(max_length=64, help_text="A name in loopsite.outbox.HANDLERS.")
    kwargs = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    created_at = models.DateTimeField(default=timezone.now)
    available_at = models.DateTimeField(default=timezone.now, help_text="Not tried again before this time.")
    claimed_until = models.DateTimeField(null=True, blank=True, help_text="Being delivered by someone until then.")
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "loopsite_outbox"
        indexes = [models.Index(fields=["status", "available_at"], name="outbox_pending_due")]

    def __str__(self) -> str:
        return f"{self.handler} #{self.pk} ({self.status})"
