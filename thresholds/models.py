"""Agents, their threshold definitions, and immutable numbered config versions (exactly one live)."""

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q


class Agent(models.Model):
    class Objective(models.TextChoices):
        TOLERANCE = "tolerance", "Cut false alarms, misses within tolerance"
        COST = "cost", "Minimise cost (a miss costs N false alarms)"

    agent_id = models.SlugField(max_length=100, unique=True, help_text="The agentId agents send.")
    name = models.CharField(max_length=200, blank=True)
    actions = models.JSONField(help_text="Ordered action names, weakest first.")
    review_sample_rate = models.FloatField(
        default=0.10, help_text="Share of weakest-action decisions queued for review so misses can be seen."
    )
    timezone = models.CharField(max_length=64, default="UTC")
    binary_mode = models.BooleanField(default=False, help_text="Reviewers answer thumbs up / thumbs down.")
    rule_based = models.BooleanField(default=False, help_text="Cluster by matched-rule combination.")
    window_weeks = models.PositiveSmallIntegerField(default=4, help_text="Tuner window; 6 or 8 for seasonal.")
    objective = models.CharField(max_length=16, choices=Objective.choices, default=Objective.TOLERANCE)
    miss_cost = models.FloatField(default=5.0, help_text="With the cost objective: a miss costs N false alarms.")
    # The designated approvers: when there are any, only they (and admins) decide its proposals, lock it and roll it
    # back (approvals.guard.approver_check); with none, every approver may.
    approvers = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="approver_of")
    required_approvals = models.PositiveSmallIntegerField(
        default=1,
        validators=[MinValueValidator(1)],
        help_text="Distinct approvers who must accept a proposal before it goes live; at most the number of "
        "designated approvers when there are any.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # The loop's end state (contract rule 11): a locked config changes only by rollback. Set and cleared only
    # through approvals.lock.agent_lock / agent_unlock, which audit it.
    locked_at = models.DateTimeField(null=True, blank=True, editable=False)
    locked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+", editable=False
    )
    lock_rationale = models.TextField(blank=True, editable=False)

    class Meta:
        ordering = ["agent_id"]
        constraints = [
            models.CheckConstraint(condition=Q(required_approvals__gte=1), name="agent_required_approvals_at_least_one")
        ]

    def __str__(self) -> str:
        return self.agent_id

    @property
    def is_locked(self) -> bool:
        return self.locked_at is not None

    @property
    def weakest_action(self) -> str:
        return str(self.actions[0])

    def action_rank(self, action: str) -> int:
        return list(self.actions).index(action)


class ThresholdDefinition(models.Model):
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="thresholds")
    name = models.CharField(max_length=100)
    action = models.CharField(max_length=100, help_text="The action this threshold gates.")
    min_value = models.FloatField(default=0.0)
    max_value = models.FloatField(default=1.0)
    description = models.TextField(blank=True)
    # For a rule-based agent: the rule this threshold belongs to, as its decisions name it in matchedRules (blank:
    # the threshold's own name), and the feature carrying the score the rule compares with the value (blank: the
    # decision's confidence). The tuner judges each threshold on the decisions its rule fired alone.
    rule = models.CharField(max_length=200, blank=True, help_text="The matched-rule name; blank: the threshold's name.")
    score_feature = models.CharField(
        max_length=200, blank=True, help_text="The feature holding the rule's score; blank: the decision's confidence."
    )

    class Meta:
        ordering = ["agent", "name"]
        constraints = [
            models.UniqueConstraint(fields=["agent", "name"], name="threshold_unique_name_per_agent"),
            models.CheckConstraint(condition=Q(min_value__lte=models.F("max_value")), name="threshold_min_le_max"),
        ]

    def __str__(self) -> str:
        return f"{self.agent.agent_id}.{self.name}"

    @property
    def rule_name(self) -> str:
        """The name this threshold's rule reports in a decision's matchedRules."""
        return self.rule or self.name


class ConfigVersion(models.Model):
    """One immutable snapshot of all of an agent's threshold values. A change is a new row, never an edit."""

    class Source(models.TextChoices):
        INITIAL = "initial"
        PROPOSAL = "proposal"
        ROLLBACK = "rollback"
        MANUAL = "manual"
        # A canary arm's values (rollouts.Canary): live only for its share of sessions, never ``is_live``.
        CANARY = "canary"

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="config_versions")
    number = models.PositiveIntegerField()
    values = models.JSONField(help_text="{threshold name: value}")
    source = models.CharField(max_length=16, choices=Source.choices)
    proposal = models.ForeignKey(
        "tuner.Proposal", null=True, blank=True, on_delete=models.PROTECT, related_name="config_versions"
    )
    rolled_back_version = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="rolled_back_by",
        help_text="For a rollback: the version it undid.",
    )
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reason = models.TextField(blank=True)
    is_live = models.BooleanField(default=False)
    activated_at = models.DateTimeField()
    superseded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["agent", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["agent", "number"], name="config_version_unique_number"),
            # Exactly one live version per agent, enforced by the database.
            models.UniqueConstraint(fields=["agent"], condition=Q(is_live=True), name="config_version_one_live"),
        ]

    def __str__(self) -> str:
        return f"{self.agent.agent_id} v{self.number}"


class AgentKey(models.Model):
    """An API key of one agent. Only a SHA-256 of the key is stored; the key itself is shown once."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="keys")
    name = models.CharField(max_length=100, default="default")
    prefix = models.CharField(max_length=16, unique=True)
    hashed_key = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["agent", "-created_at"]

    def __str__(self) -> str:
        return f"{self.agent.agent_id} key {self.prefix}"
