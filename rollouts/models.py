"""A canary rollout: a proposal's value live for a share of sessions, judged against the rest over the same days."""

from django.conf import settings
from django.db import models
from django.db.models import Q


class Canary(models.Model):
    """One canary of one proposal. Its arm's values are their own config version (``version``: source ``canary``,
    never ``is_live``), so every decision names the arm it ran under in its ``configVersion`` and lineage stays
    exact; the other sessions run under ``control``, the version live when it started.

    ``running`` until the watchdog (or an approver) promotes it (a new live version with its values) or aborts it
    (a new live version with the control's values); ``inconclusive`` when its time ran out without a verdict: it
    keeps serving until an approver promotes or aborts it. Only one canary of an agent serves at a time.
    """

    class State(models.TextChoices):
        RUNNING = "running"
        INCONCLUSIVE = "inconclusive"
        PROMOTED = "promoted"
        ABORTED = "aborted"

    SERVING = (State.RUNNING, State.INCONCLUSIVE)

    agent = models.ForeignKey("thresholds.Agent", on_delete=models.CASCADE, related_name="canaries")
    proposal = models.ForeignKey("tuner.Proposal", on_delete=models.PROTECT, related_name="canaries")
    version = models.OneToOneField("thresholds.ConfigVersion", on_delete=models.PROTECT, related_name="canary")
    control = models.ForeignKey("thresholds.ConfigVersion", on_delete=models.PROTECT, related_name="+")
    threshold_name = models.CharField(max_length=100)
    share = models.FloatField(help_text="The share of sessions in the canary arm (0..1).")
    started_at = models.DateTimeField()
    ends_at = models.DateTimeField(help_text="When its time runs out: inconclusive unless judged before.")
    started_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    rationale = models.TextField()
    state = models.CharField(max_length=16, choices=State.choices, default=State.RUNNING)
    assessment = models.JSONField(default=dict, blank=True, help_text="The last assessment's figures.")
    assessed_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    ended_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    ended_label = models.CharField(max_length=200, blank=True, help_text="Who ended it: a username or 'watchdog'.")
    end_rationale = models.TextField(blank=True)
    result = models.ForeignKey(
        "thresholds.ConfigVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The live version its promotion or abort made.",
    )

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["agent"], condition=Q(state__in=["running", "inconclusive"]), name="canary_one_serving"
            ),
            models.CheckConstraint(condition=Q(share__gt=0) & Q(share__lt=1), name="canary_share_between_0_and_1"),
        ]

    def __str__(self) -> str:
        return f"canary {self.version} ({self.state})"

    @property
    def serving(self) -> bool:
        return self.state in self.SERVING
