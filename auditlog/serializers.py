"""The decision API's shapes, for the OpenAPI schema.

The bodies themselves are checked by ``auditlog.entry`` (the one parser, shared with imports and the
simulation), which names the faulty field in camelCase; these serializers only describe the shapes so the
docs at /api/docs/ show them.
"""

from rest_framework import serializers


class DecisionPartSerializer(serializers.Serializer):
    action = serializers.CharField(help_text="One of the agent's actions, e.g. auto-resolve, flag, escalate.")
    confidence = serializers.FloatField(
        min_value=0,
        max_value=1,
        required=False,
        allow_null=True,
        help_text="0-1 score from the model. Required, except from a rule-based agent (Agent.rule_based), which may "
        "leave it out: the rule that fired (context.matchedRules) replaces it; then it reads back as null.",
    )
    thresholdUsed = serializers.FloatField(help_text="The threshold that gated the action.")
    reasoning = serializers.CharField(max_length=4000, help_text="Short rationale captured at decision time.")
    thresholdName = serializers.CharField(
        required=False, help_text="Addition to the seed's schema; derived from the action when absent."
    )
    shadowAction = serializers.CharField(
        required=False,
        help_text="Optional: the action the pending proposal's candidate values (the config's ``shadow``) would "
        "have taken for this confidence. The agent client fills it; counted on the proposal's page.",
    )
    shadowProposalId = serializers.IntegerField(
        required=False,
        min_value=1,
        help_text="Optional: the proposal whose shadow gave shadowAction (the config's shadow.proposalId); "
        "when absent, the proposal in shadow when the entry arrives.",
    )


class ContextSerializer(serializers.Serializer):
    inputHash = serializers.CharField(help_text="Dedup key for the input.")
    features = serializers.DictField(child=serializers.FloatField(), help_text="At most 200 finite numbers.")
    matchedRules = serializers.ListField(child=serializers.CharField(), help_text="At most 100 rules.")


class HumanResponseSerializer(serializers.Serializer):
    action = serializers.ChoiceField(choices=["approve", "dismiss", "modify", "escalate"])
    respondedAt = serializers.DateTimeField()
    responderId = serializers.CharField()
    modifiedAction = serializers.CharField(required=False, help_text="Required when action is modify.")
    note = serializers.CharField(required=False, max_length=4000)
    timeToRespond = serializers.FloatField(help_text="Seconds from the decision's timestamp to the response.")


class EntryInSerializer(serializers.Serializer):
    """The seed's ActionLogEntry."""

    id = serializers.CharField(required=False, max_length=128, help_text="Unique; a UUID is made when absent.")
    timestamp = serializers.DateTimeField(help_text="ISO 8601 with an offset; at most 5 minutes in the future.")
    agentId = serializers.CharField(help_text="Must be the key's agent.")
    sessionId = serializers.CharField()
    decision = DecisionPartSerializer()
    # DRF's metaclass moves declared fields off the class, so these names do not shadow Serializer attributes.
    context = ContextSerializer()  # type: ignore[assignment]
    humanResponse = HumanResponseSerializer(required=False, help_text="For imports of already-reviewed decisions.")


class EntryOutSerializer(EntryInSerializer):
    configVersion = serializers.IntegerField(help_text="The config version live when the entry was logged.")
    queuedForReview = serializers.BooleanField()


class ResponseRevisionSerializer(serializers.Serializer):
    revision = serializers.IntegerField(help_text="1 for the first answer, then each amendment.")
    action = serializers.ChoiceField(choices=["approve", "dismiss", "modify", "escalate"])
    respondedAt = serializers.DateTimeField()
    responderId = serializers.CharField()
    timeToRespond = serializers.FloatField(allow_null=True)
    modifiedAction = serializers.CharField(required=False)
    note = serializers.CharField(required=False)


class EntryDetailOutSerializer(EntryOutSerializer):
    responseHistory = ResponseRevisionSerializer(
        many=True, help_text="Every answer, oldest first; the last one is the humanResponse everyone reads."
    )


class BatchInSerializer(serializers.Serializer):
    entries = serializers.ListField(
        child=serializers.JSONField(),
        max_length=1000,
        help_text=(
            "At most 1000 ActionLogEntry objects (the shape of POST /decisions); body at most 10 MiB. Each is checked "
            "on its own: a bad one is `invalid` in its slot of the results and the others are stored."
        ),
    )


class BatchResultSerializer(serializers.Serializer):
    id = serializers.CharField(allow_null=True)
    status = serializers.ChoiceField(choices=["created", "duplicate", "conflict", "invalid"])
    errors = serializers.DictField(  # type: ignore[assignment]
        child=serializers.CharField(), required=False, help_text="{field: message}"
    )


class BatchOutSerializer(serializers.Serializer):
    results = BatchResultSerializer(many=True, help_text="One per entry, in order.")


class DecisionPageSerializer(serializers.Serializer):
    results = EntryOutSerializer(many=True)
    next = serializers.CharField(allow_null=True, help_text="Opaque cursor for the next page; null on the last.")


class ResponseInSerializer(serializers.Serializer):
    action = serializers.ChoiceField(choices=["approve", "dismiss", "modify", "escalate"])
    modifiedAction = serializers.CharField(required=False, help_text="Required when action is modify.")
    note = serializers.CharField(required=False, max_length=4000)
    respondedAt = serializers.DateTimeField(required=False, help_text="Defaults to now.")
    amends = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Replace an existing answer: its author within 24 hours (AMEND_WINDOW_HOURS), an approver any time.",
    )


class ErrorBodySerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    field = serializers.CharField(allow_null=True, help_text="The input at fault (dotted camelCase path).")


class ErrorSerializer(serializers.Serializer):
    error = ErrorBodySerializer()
