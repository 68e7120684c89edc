"""Weekly tuner runs, the clusters they found, and the proposals they made (with their evidence)."""

from django.conf import settings
from django.db import models
from django.db.models import Q


class TunerRun(models.Model):
    """One cycle for one agent. Unique per (agent, cycle) so a repeated or concurrent run does the work once."""

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    class Generator(models.TextChoices):
        STATISTICAL = "statistical"
        CLAUDE = "claude"

    agent = models.ForeignKey("thresholds.Agent", on_delete=models.CASCADE, related_name="tuner_runs")
    cycle = models.DateField(help_text="Monday of the ISO week the cycle belongs to (agent's timezone).")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    output = models.JSONField(null=True, blank=True, help_text="The seed's output format, exactly.")
    generator = models.CharField(max_length=16, choices=Generator.choices, default=Generator.STATISTICAL)
    prompt_hash = models.CharField(max_length=64, blank=True)
    notes = models.JSONField(default=list, blank=True, help_text="Dropped proposals, fallbacks, constraints.")
    errors = models.JSONField(default=list, blank=True)
    stats = models.JSONField(default=dict, blank=True, help_text="Phase-1 counts and weekly trends.")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Written every TUNER_HEARTBEAT_SECONDS by the worker computing the run; a running run whose "
        "heartbeat is three beats old is taken over by the next worker or request.",
    )
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_seconds = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["-cycle", "-created_at"]
        constraints = [models.UniqueConstraint(fields=["agent", "cycle"], name="tuner_run_one_per_cycle")]

    def __str__(self) -> str:
        return f"{self.agent.agent_id} cycle {self.cycle}"


class Cluster(models.Model):
    class Kind(models.TextChoices):
        DISMISS = "dismiss", "Dismissals (false positives)"
        ESCALATE = "escalate", "Escalations (missed signals)"

    run = models.ForeignKey(TunerRun, on_delete=models.CASCADE, related_name="clusters")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    label = models.CharField(max_length=300, blank=True)
    size = models.PositiveIntegerField()
    share = models.FloatField(help_text="Share of this kind's responses in the window.")
    thresholds = models.JSONField(default=list)
    confidence_min = models.FloatField()
    confidence_max = models.FloatField()
    distinguishing_features = models.JSONField(default=list, help_text="Features that set it apart.")
    rules = models.JSONField(default=list, blank=True, help_text="Matched-rule combination (rule-based).")
    sample_entry_ids = models.JSONField(default=list)

    class Meta:
        ordering = ["run", "kind", "-size"]

    def __str__(self) -> str:
        return f"{self.kind} cluster of {self.size}"


class Proposal(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        ACCEPTED = "accepted"
        MODIFIED = "modified"
        REJECTED = "rejected"
        SUPERSEDED = "superseded"
        EXPIRED = "expired"
        ROLLED_BACK = "rolled_back"
        # Accepted as a canary (rollouts.Canary): live for a share of sessions until promoted or aborted.
        CANARY = "canary"

    class Direction(models.TextChoices):
        INCREASE = "increase"
        DECREASE = "decrease"

    class Confidence(models.TextChoices):
        LOW = "low"
        MEDIUM = "medium"
        HIGH = "high"

    agent = models.ForeignKey("thresholds.Agent", on_delete=models.CASCADE, related_name="proposals")
    run = models.ForeignKey(TunerRun, null=True, blank=True, on_delete=models.CASCADE, related_name="proposals")
    rank = models.PositiveSmallIntegerField(default=1)
    threshold_name = models.CharField(max_length=100)
    current_value = models.FloatField(help_text="The live value when proposed.")
    proposed_value = models.FloatField()
    direction = models.CharField(max_length=8, choices=Direction.choices)
    confidence = models.CharField(max_length=8, choices=Confidence.choices)
    expected_impact = models.TextField()
    impact = models.JSONField(default=dict, blank=True, help_text="Replayed impact with its bootstrap interval.")
    evidence_count = models.PositiveIntegerField()
    sample_entry_ids = models.JSONField(default=list)
    risk_assessment = models.TextField()
    risk_flagged = models.BooleanField(default=False, help_text="Might raise missed signals.")
    clusters = models.JSONField(
        default=list,
        blank=True,
        help_text="The clusters of its cycle it addresses (tuner.clusters), largest first: kind, label, size, "
        "share, confidenceRange, distinguishingFeatures, rules, sampleEntryIds.",
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="For a manual proposal: the staff member who made it (may not approve it).",
    )
    created_at = models.DateTimeField()
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_value = models.FloatField(null=True, blank=True)
    rationale = models.TextField(blank=True)
    rolled_back_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "rank"]
        indexes = [models.Index(fields=["agent", "status"], name="proposal_agent_status")]

    def __str__(self) -> str:
        return f"{self.threshold_name} {self.current_value:g} -> {self.proposed_value:g}"


class ProposalApproval(models.Model):
    """One approver's sign-off on a proposal's value (``Agent.required_approvals``): an accept, or the modify that
    set the value the others then accept. A modify restarts the count: the sign-offs before it get
    ``superseded_at`` and no longer count. One approver counts once (the partial unique constraint)."""

    class Decision(models.TextChoices):
        ACCEPT = "accept"
        MODIFY = "modify"

    proposal = models.ForeignKey(Proposal, on_delete=models.CASCADE, related_name="approvals")
    approver = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    decision = models.CharField(max_length=8, choices=Decision.choices)
    value = models.FloatField(help_text="The value signed off: the proposed value, or the modify's value.")
    rationale = models.TextField()
    at = models.DateTimeField()
    superseded_at = models.DateTimeField(
        null=True, blank=True, help_text="When a later modify restarted the count: this sign-off no longer counts."
    )

    class Meta:
        ordering = ["at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["proposal", "approver"],
                condition=Q(superseded_at__isnull=True),
                name="proposal_approval_one_per_approver",
            )
        ]

    def __str__(self) -> str:
        return f"{self.decision} of {self.value:g} on proposal #{self.proposal_id}"


class ProposalEvidence(models.Model):
    """A cited log entry. Refers to the decision by its entry id: no foreign key into the decision log."""

    proposal = models.ForeignKey(Proposal, on_delete=models.CASCADE, related_name="evidence")
    entry_id = models.CharField(max_length=128)
    kind = models.CharField(max_length=16, help_text="dismiss / escalate / approve: what it is cited for.")
    is_sample = models.BooleanField(default=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["proposal", "entry_id"], name="evidence_unique_per_proposal")]

    def __str__(self) -> str:
        return f"{self.entry_id} ({self.kind})"


class RejectionMemory(models.Model):
    """The meta-feedback loop: after N consecutive rejections of one kind of proposal, the approvers'
    rationales become constraints for the generator, until the evidence has grown past ``until_evidence``."""

    agent = models.ForeignKey("thresholds.Agent", on_delete=models.CASCADE, related_name="rejection_memories")
    threshold_name = models.CharField(max_length=100)
    direction = models.CharField(max_length=8, choices=Proposal.Direction.choices)
    rationales = models.JSONField(default=list)
    evidence_at_rejection = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField()
    lifted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["agent", "threshold_name", "direction"],
                condition=Q(lifted_at__isnull=True),
                name="one_active_rejection_memory",
            )
        ]

    def __str__(self) -> str:
        return f"{self.threshold_name} {self.direction}: {len(self.rationales)} rejections"


class MissReference(models.Model):
    """The agent's misses before the loop changed anything (contract rule 10): per threshold, real misses (noise
    corrected) as a share of the real cases, measured over the weeks before the first accepted change. The tuner
    sets it on its own; an engineer may set another period in the admin, and the next cycle measures it."""

    agent = models.OneToOneField("thresholds.Agent", on_delete=models.CASCADE, related_name="miss_reference")
    period_start = models.DateTimeField(help_text="Decisions logged from here...")
    period_end = models.DateTimeField(help_text="...up to here (exclusive) make the reference.")
    set_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Who set the period; empty when the tuner took the weeks before the first accepted change.",
    )
    note = models.TextField(blank=True, help_text="Why this period.")
    figures = models.JSONField(
        default=dict, blank=True, help_text="Per threshold: misses, realCases, rate, value, floors (measured)."
    )
    measured_start = models.DateTimeField(null=True, blank=True)
    measured_end = models.DateTimeField(null=True, blank=True)
    measured_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.agent.agent_id} miss reference {self.label}"

    @property
    def label(self) -> str:
        return f"{self.period_start:%Y-%m-%d}..{self.period_end:%Y-%m-%d}"

    @property
    def measured(self) -> bool:
        return bool(self.figures) and (self.measured_start, self.measured_end) == (self.period_start, self.period_end)
