"""The append-only audit trail of every proposal, decision on it, config version, rollback and manual change."""

from django.conf import settings
from django.db import models


class AuditEvent(models.Model):
    class Kind(models.TextChoices):
        PROPOSAL_CREATED = "proposal.created"
        PROPOSAL_ACCEPTED = "proposal.accepted"
        PROPOSAL_APPROVAL_RECORDED = "proposal.approval_recorded"
        PROPOSAL_COMMENTED = "proposal.commented"
        PROPOSAL_MODIFIED = "proposal.modified"
        PROPOSAL_REJECTED = "proposal.rejected"
        PROPOSAL_SUPERSEDED = "proposal.superseded"
        PROPOSAL_EXPIRED = "proposal.expired"
        CONFIG_ACTIVATED = "config.activated"
        CONFIG_ROLLED_BACK = "config.rolled_back"
        CONFIG_MANUAL = "config.manual"
        TUNER_RUN = "tuner.run"
        # The watchdog's verdicts on a watched change (approvals.watchdog): by the test, or by an approver.
        WATCH_GOOD = "watch.good"
        WATCH_MARKED_GOOD = "watch.marked_good"
        WATCH_INCONCLUSIVE = "watch.inconclusive"
        WATCH_ROLLED_BACK = "watch.rolled_back"
        # A canary rollout (rollouts): started by an approver, promoted or aborted by the watchdog or an approver.
        CANARY_STARTED = "canary.started"
        CANARY_PROMOTED = "canary.promoted"
        CANARY_ABORTED = "canary.aborted"
        CANARY_INCONCLUSIVE = "canary.inconclusive"
        AGENT_LOCKED = "agent.locked"
        AGENT_UNLOCKED = "agent.unlocked"
        # An engineer changed the rules the tuner is judged by (approvals.rule_changes).
        RULES_CHANGED = "rules.changed"

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
    # The agent's hash chain (approvals.chain), filled by audit_record.
    prev_hash = models.CharField(
        max_length=64, default="", editable=False, help_text="The hash of the agent's row before this one."
    )
    hash = models.CharField(
        max_length=64, default="", editable=False, help_text="SHA-256 of prev_hash and this row's content."
    )

    class Meta:
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["agent", "threshold_name", "at"], name="audit_agent_threshold_time")]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.kind}"


class VersionWatch(models.Model):
    """The watchdog's verdict on one config version made live recently (contract rule 7).

    One row per watched version: made live from a proposal, or a manual change that is not a rollback. It stays
    ``watching`` until judged ``good`` (by the test or an approver), ``rolled_back`` (by the watchdog or an
    approver), or ``inconclusive`` when its watch window (WATCHDOG_WATCH_DAYS) ends without a verdict.
    """

    class State(models.TextChoices):
        WATCHING = "watching"
        GOOD = "good"
        INCONCLUSIVE = "inconclusive"
        ROLLED_BACK = "rolled_back"

    agent = models.ForeignKey("thresholds.Agent", on_delete=models.CASCADE, related_name="version_watches")
    version = models.OneToOneField("thresholds.ConfigVersion", on_delete=models.CASCADE, related_name="watch")
    state = models.CharField(max_length=16, choices=State.choices, default=State.WATCHING)
    watch_until = models.DateTimeField(help_text="When the watch window ends: activation + WATCHDOG_WATCH_DAYS.")
    baseline = models.ForeignKey(
        "thresholds.ConfigVersion",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The last earlier version with enough responses of its own, at the last assessment.",
    )
    assessment = models.JSONField(default=dict, blank=True, help_text="The last assessment's figures.")
    assessed_at = models.DateTimeField(null=True, blank=True)
    judged_at = models.DateTimeField(null=True, blank=True)
    judged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    judged_label = models.CharField(max_length=200, blank=True, help_text="Who judged: a username or 'watchdog'.")
    rationale = models.TextField(blank=True)
    rolled_back_by = models.ForeignKey(
        "thresholds.ConfigVersion",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The rollback version that undid it.",
    )

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["state", "agent"], name="version_watch_state")]

    def __str__(self) -> str:
        return f"watch of {self.version} ({self.state})"
