"""The append-only audit trail of every proposal, decision on it, config version, rollback and manual change."""

from django.conf import settings
from django.db import models


class AuditEvent(models.Model):
    class Kind(models.TextChoices):
        PROPOSAL_CREATED = "proposal.created"
        PROPOSAL_ACCEPTED = "proposal.accepted"
        PROPOSAL_MODIFIED = "proposal.modified"
        PROPOSAL_REJECTED = "proposal.rejected"
        PROPOSAL_SUPERSEDED = "proposal.superseded"
        PROPOSAL_EXPIRED = "proposal.expired"
        CONFIG_ACTIVATED = "config.activated"
        CONFIG_ROLLED_BACK = "config.rolled_back"
        CONFIG_MANUAL = "config.manual"
        TUNER_RUN = "tuner.run"

    kind = models.CharField(max_length=32, choices=Kind.choices)
    at = models.DateTimeField()
    agent = models.ForeignKey("thresholds.Agent", on_delete=models.PROTECT, related_name="audit_events")
    threshold_name = models.CharField(max_length=100, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    actor_label = models.CharField(max_length=200, help_text="Who: a username, 'tuner' or 'watchdog'.")
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    proposal = models.ForeignKey("tuner.Proposal", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    run = models.ForeignKey("tuner.TunerRun", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    config_version = models.ForeignKey(
        "thresholds.ConfigVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    evidence_entry_ids = models.JSONField(default=list, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    message = models.TextField(blank=True)

    class Meta:
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["agent", "threshold_name", "at"], name="audit_agent_threshold_time")]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.kind}"
