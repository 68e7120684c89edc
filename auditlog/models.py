"""The decision log: every agent decision in the seed's ActionLogEntry shape, with its human response.

Designed to be partitioned by week on PostgreSQL later:
- no table holds a foreign key into ``Decision`` (evidence and claims refer to ``entry_id`` as plain text);
- the human response lives on the decision row itself, written once by a conditional UPDATE;
- the uniqueness of the seed's ``id`` (per agent) is kept by ``DecisionKey``, a small unpartitioned registry,
  because a partitioned table's unique indexes must include the partition key (``timestamp``).
"""

from django.db import models
from django.db.models import Q


class ResponseAction(models.TextChoices):
    APPROVE = "approve"
    DISMISS = "dismiss"
    MODIFY = "modify"
    ESCALATE = "escalate"


class ReviewReason(models.TextChoices):
    FIRED = "fired", "Fired an action stronger than the weakest"
    SAMPLED = "sampled", "Weakest action, sampled for review"
    # Weakest action, queued only because the pending proposal's candidate values would have fired (at the
    # SHADOW_REVIEW_RATE, beyond the uniform sample): evidence for the shadow, left out of the weighted
    # estimates (the tuner's, the watchdog's), which read only the uniform sample.
    SHADOW = "shadow", "Weakest action, queued because the shadow would have fired"
    NONE = "none", "Not queued"


class DecisionKey(models.Model):
    """Registry of entry ids: the one place their uniqueness is enforced, and the idempotency check.

    An id is unique per agent: two agents may use the same one, and neither can tell whether the other's ids
    exist. The unique index leads with ``entry_id`` so that it also serves a person's look-up by id alone, which
    must tell an id used by one agent from one used by several.

    ``content_hash`` is a SHA-256 of the canonical entry, so a repeated POST is told apart from a conflicting
    one without reading the decision back.
    """

    id = models.BigAutoField(primary_key=True)
    entry_id = models.CharField(max_length=128)
    content_hash = models.CharField(max_length=64)
    agent_id = models.BigIntegerField()
    timestamp = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["entry_id", "agent_id"], name="decision_key_unique_per_agent")]

    def __str__(self) -> str:
        return self.entry_id


class DecisionRecord(models.Model):
    """The columns of a logged decision with its response: the decision log's, and the evidence table's."""

    entry_id = models.CharField(max_length=128, help_text="The seed's id; unique per agent through DecisionKey.")
    session_id = models.CharField(max_length=200)
    timestamp = models.DateTimeField(help_text="When the agent decided (the seed's timestamp).")
    received_at = models.DateTimeField()

    # decision
    action = models.CharField(max_length=100)
    # None only for a rule-based agent, which reports the rule that fired instead (context.matchedRules).
    confidence = models.FloatField(null=True, blank=True)
    threshold_used = models.FloatField()
    threshold_name = models.CharField(max_length=100, help_text="Given, or derived from the gated action.")
    reasoning = models.TextField(blank=True)

    # context
    input_hash = models.CharField(max_length=200)
    features = models.JSONField(default=dict)
    matched_rules = models.JSONField(default=list)

    # What the pending proposal in shadow (``shadow_proposal``) would have done with this decision's confidence,
    # as the agent client worked it out from the config's ``shadow`` values; NULL when no shadow ran.
    shadow_action = models.CharField(max_length=100, null=True, blank=True)
    shadow_proposal_id = models.BigIntegerField(null=True, blank=True, help_text="The proposal whose shadow it is.")

    review_reason = models.CharField(max_length=8, choices=ReviewReason.choices)
    queued = models.BooleanField(help_text="In the review queue: fired, or sampled at the agent's rate.")
    content_hash = models.CharField(max_length=64)

    # humanResponse, written once (NULL until then)
    response_action = models.CharField(max_length=16, choices=ResponseAction.choices, null=True, blank=True)
    responded_at = models.DateTimeField(null=True, blank=True)
    responder_id = models.CharField(max_length=200, null=True, blank=True)
    modified_action = models.CharField(max_length=100, null=True, blank=True)
    response_note = models.TextField(null=True, blank=True)
    time_to_respond = models.FloatField(null=True, blank=True, help_text="Seconds from timestamp to response.")
    response_source = models.CharField(max_length=16, null=True, blank=True, help_text="api, web, import")

    # A reviewer's claim on a queued item, so two do not work the same one.
    claimed_by = models.CharField(max_length=200, null=True, blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return self.entry_id

    @property
    def has_response(self) -> bool:
        return self.response_action is not None


class Decision(DecisionRecord):
    seq = models.BigAutoField(primary_key=True)
    # On PostgreSQL both are checked per statement by triggers, not per row by keys (auditlog.references).
    agent = models.ForeignKey(
        "thresholds.Agent", on_delete=models.PROTECT, related_name="decisions", db_constraint=False
    )
    config_version = models.ForeignKey(
        "thresholds.ConfigVersion", on_delete=models.PROTECT, related_name="+", db_constraint=False
    )

    class Meta:
        ordering = ["-timestamp", "-seq"]
        indexes = [
            # Serves the tuner window, GET /decisions?agentId=&from=&to= and the weekly metrics:
            # every per-agent read is a time range.
            models.Index(fields=["agent", "timestamp", "seq"], name="decision_agent_time"),
            # Serves GET /decisions/{id} and the idempotency path that returns a stored entry.
            models.Index(fields=["entry_id"], name="decision_entry_id"),
            # Serves the review queue (pending items, oldest first, keyset on (timestamp, seq)) across agents.
            models.Index(
                fields=["timestamp", "seq"],
                name="decision_queue_pending",
                condition=Q(queued=True, response_action__isnull=True),
            ),
            # Serves the review queue filtered by agent.
            models.Index(
                fields=["agent", "timestamp", "seq"],
                name="decision_queue_agent_pending",
                condition=Q(queued=True, response_action__isnull=True),
            ),
            # Serves the tuner's cluster samples (tuner.selectors.cluster_samples): the pick of every k-th responded
            # decision of a label reads this index alone (an index-only scan), not the window's whole rows again.
            models.Index(
                fields=["agent", "timestamp", "seq"],
                name="decision_agent_responded",
                include=["action", "response_action", "modified_action"],
                condition=Q(response_action__isnull=False),
            ),
            # Serves the watchdog: responses counted per config version.
            models.Index(
                fields=["config_version", "response_action"],
                name="decision_version_responses",
                condition=Q(response_action__isnull=False),
            ),
            # Serves "what I did today" in the reviewer header.
            models.Index(
                fields=["responder_id", "responded_at"],
                name="decision_responder_time",
                condition=Q(response_action__isnull=False),
            ),
        ]


class EvidenceDecision(DecisionRecord):
    """A decision cited as evidence (by a proposal, a cluster or an audit event), kept here when retention
    archives its week, so every citation still resolves. Rows are copied whole from the log, ``seq`` included."""

    seq = models.BigIntegerField(primary_key=True)
    agent = models.ForeignKey("thresholds.Agent", on_delete=models.PROTECT, related_name="+")
    config_version = models.ForeignKey("thresholds.ConfigVersion", on_delete=models.PROTECT, related_name="+")
    kept_at = models.DateTimeField(help_text="When retention moved it here.")

    class Meta:
        ordering = ["-timestamp", "-seq"]
        constraints = [models.UniqueConstraint(fields=["agent", "entry_id"], name="evidence_decision_unique")]


class ResponseRevision(models.Model):
    """The history of one decision's human response, append-only: the first answer (number 1) and every
    amendment after it. The decision row carries the latest, the label the tuner, the watchdog, the metrics and
    the exports read. A decision that was never amended has no rows here: its history is its one response.
    """

    entry_id = models.CharField(max_length=128)
    agent = models.ForeignKey("thresholds.Agent", on_delete=models.PROTECT, related_name="+")
    decision_timestamp = models.DateTimeField(help_text="The decision's timestamp (finds its week's partition).")
    number = models.PositiveSmallIntegerField(help_text="1 for the first answer, then each amendment.")
    action = models.CharField(max_length=16, choices=ResponseAction.choices)
    modified_action = models.CharField(max_length=100, null=True, blank=True)
    note = models.TextField(null=True, blank=True)
    responder_id = models.CharField(max_length=200)
    responded_at = models.DateTimeField()
    time_to_respond = models.FloatField(null=True, blank=True)
    source = models.CharField(max_length=16, null=True, blank=True)
    recorded_at = models.DateTimeField(help_text="When loopsite stored this revision.")

    class Meta:
        ordering = ["agent", "entry_id", "number"]
        constraints = [models.UniqueConstraint(fields=["agent", "entry_id", "number"], name="response_revision_unique")]

    def __str__(self) -> str:
        return f"{self.entry_id} response #{self.number}"
