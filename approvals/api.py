"""API of the approval gate and the audit trail. Thin: parse, call one service or selector, render."""

import csv
from typing import Any

from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from approvals.discussion import proposal_comment, proposal_thread
from approvals.lock import agent_config_lock, agent_config_unlock, lock_render
from approvals.selectors import (
    AUDIT_CSV_COLUMNS,
    approval_render,
    audit_event_render,
    audit_events,
    entries_render,
    proposal_approvals,
    proposal_get,
    proposal_sample_ids,
    proposals_list,
)
from approvals.services import proposal_create_manual, proposal_decide
from auditlog.serializers import ErrorSerializer
from loopsite.exceptions import Forbidden, ValidationFailed
from loopsite.replica import lagging_reads
from people.roles import is_approver, is_staff
from rollouts.render import canary_render
from rollouts.selectors import canary_of, shadow_evidence
from rollouts.services import Rollout
from thresholds.selectors import agent_get, config_get_live
from tuner.models import Proposal


def _iso(value: Any) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def require_approver_or_staff(request: Request) -> None:
    if not (is_staff(request.user) or is_approver(request.user)):
        raise Forbidden("only staff and approvers may read proposals and the audit trail")


def proposal_render(proposal: Proposal, *, live_value: float | None = None) -> dict[str, Any]:
    """The seed's proposal fields (camelCase) plus the gate's state. ``currentValue`` is the value at the
    cycle's start, as the tuner emitted it; ``liveValue`` is the live config's value now."""
    approvals = proposal_approvals(proposal=proposal)
    return {
        "id": proposal.pk,
        "agentId": proposal.agent.agent_id,
        "runId": proposal.run_id,
        "rank": proposal.rank,
        "thresholdName": proposal.threshold_name,
        "currentValue": proposal.current_value,
        "liveValue": live_value,
        "proposedValue": proposal.proposed_value,
        "direction": proposal.direction,
        "confidence": proposal.confidence,
        "expectedImpact": proposal.expected_impact,
        "impact": proposal.impact or {},
        "evidenceCount": proposal.evidence_count,
        "sampleEntryIds": list(proposal.sample_entry_ids or []),
        "riskAssessment": proposal.risk_assessment,
        "riskFlagged": proposal.risk_flagged,
        "clusters": list(proposal.clusters or []),
        "status": proposal.status,
        "createdAt": _iso(proposal.created_at),
        "createdBy": proposal.created_by.username if proposal.created_by is not None else None,
        "decidedBy": proposal.decided_by.username if proposal.decided_by is not None else None,
        "decidedAt": _iso(proposal.decided_at),
        "decidedValue": proposal.decided_value,
        "rationale": proposal.rationale,
        "rolledBackAt": _iso(proposal.rolled_back_at),
        "requiredApprovals": approvals.required,
        "approvalsNeeded": approvals.needed,
        "approvalValue": approvals.value,
        "approvals": [approval_render(a) for a in approvals.counting + approvals.earlier],
    }


# --- Response shapes, for the OpenAPI schema (the views render plain dicts of exactly these fields) ----------


class FeatureEffectOut(serializers.Serializer):
    feature = serializers.CharField()
    effect = serializers.FloatField(help_text="Cluster mean minus the approvals' mean, in the approvals' std units.")


class ProposalClusterOut(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["dismiss", "escalate"])
    label = serializers.CharField(  # type: ignore[assignment]  # the field, not Field.label: DRF's metaclass pops it
        help_text="Its distinguishing features in words, or its matched-rule combination."
    )
    size = serializers.IntegerField(help_text="Responded decisions in the cluster over the cycle's window.")
    share = serializers.FloatField(allow_null=True, help_text="Its share of the window's responses of this kind.")
    confidenceRange = serializers.ListField(child=serializers.FloatField(), help_text="[lowest, highest].")
    distinguishingFeatures = FeatureEffectOut(many=True)
    rules = serializers.ListField(child=serializers.CharField(), help_text="Matched-rule combination (rule-based).")
    sampleEntryIds = serializers.ListField(child=serializers.CharField())


class ApprovalOut(serializers.Serializer):
    approver = serializers.CharField(help_text="The approver's username.")
    decision = serializers.ChoiceField(
        choices=["accept", "modify"], help_text="accept: signed off the value; modify: set it, restarting the count."
    )
    value = serializers.FloatField(help_text="The value signed off.")
    rationale = serializers.CharField()
    at = serializers.DateTimeField()
    counts = serializers.BooleanField(
        help_text="Whether it counts towards requiredApprovals: false once a later modify restarted the count."
    )


class ProposalOut(serializers.Serializer):
    id = serializers.IntegerField()
    agentId = serializers.CharField()
    runId = serializers.IntegerField(allow_null=True)
    rank = serializers.IntegerField()
    thresholdName = serializers.CharField()
    currentValue = serializers.FloatField(help_text="The value at the cycle's start, as the tuner emitted it.")
    liveValue = serializers.FloatField(allow_null=True, help_text="The live config's value now.")
    proposedValue = serializers.FloatField()
    direction = serializers.ChoiceField(choices=Proposal.Direction.values)
    confidence = serializers.ChoiceField(choices=Proposal.Confidence.values)
    expectedImpact = serializers.CharField()
    impact = serializers.DictField(help_text="Replayed impact with its bootstrap intervals.")
    evidenceCount = serializers.IntegerField()
    sampleEntryIds = serializers.ListField(child=serializers.CharField())
    riskAssessment = serializers.CharField()
    riskFlagged = serializers.BooleanField(help_text="Might raise missed signals.")
    clusters = ProposalClusterOut(
        many=True,
        help_text="The clusters of its cycle the proposal addresses, largest first: of the kind its move answers "
        "(dismissals for an increase, escalations for a decrease), logged under the thresholds the band holds, "
        "with a confidence range overlapping the band [current, proposed) or [proposed, current).",
    )
    status = serializers.ChoiceField(choices=Proposal.Status.values)
    createdAt = serializers.DateTimeField()
    createdBy = serializers.CharField(allow_null=True, help_text="For a manual proposal: who made it.")
    decidedBy = serializers.CharField(allow_null=True)
    decidedAt = serializers.DateTimeField(allow_null=True)
    decidedValue = serializers.FloatField(allow_null=True)
    rationale = serializers.CharField()
    rolledBackAt = serializers.DateTimeField(allow_null=True)
    requiredApprovals = serializers.IntegerField(
        help_text="Distinct approvers who must accept before the change goes live (the agent's setting, default 1)."
    )
    approvalsNeeded = serializers.IntegerField(
        help_text="More accepts, by approvers who have not signed yet, before it goes live; 0 once not pending."
    )
    approvalValue = serializers.FloatField(
        help_text="The value an accept signs off now: proposedValue, or the value of the modify the count began with."
    )
    approvals = ApprovalOut(
        many=True,
        help_text="Each approver's sign-off, oldest first: those that count, then those a later modify made stop "
        "counting. The decisive one is there too; a reject is in decidedBy and rationale.",
    )


class ProposalListOut(serializers.Serializer):
    results = ProposalOut(many=True)


class EvidenceOut(serializers.Serializer):
    entryId = serializers.CharField()
    kind = serializers.CharField()
    entry = serializers.DictField(allow_null=True, help_text="The cited ActionLogEntry, or null if gone.")


class ShadowGroupOut(serializers.Serializer):
    taken = serializers.CharField(help_text="The action the agent took.")
    wouldTake = serializers.CharField(help_text="The action the candidate value would have taken.")
    stronger = serializers.BooleanField(help_text="The candidate would have acted more strongly.")
    count = serializers.IntegerField()
    dismissed = serializers.IntegerField()
    confirmed = serializers.IntegerField(help_text="Approved: the agent's action was right.")
    escalated = serializers.IntegerField()
    open = serializers.IntegerField(help_text="Queued for review, not answered yet.")
    notQueued = serializers.IntegerField()
    candidateRight = serializers.IntegerField(help_text="Reviewers sided with the candidate.")
    candidateWrong = serializers.IntegerField()


class ShadowEvidenceOut(serializers.Serializer):
    proposalId = serializers.IntegerField()
    decisions = serializers.IntegerField(help_text="Decisions logged with this proposal's shadow action.")
    changed = serializers.IntegerField(help_text="Of those, the ones the candidate would have decided otherwise.")
    days = serializers.FloatField(help_text="From the first to the last such decision.")
    firstAt = serializers.DateTimeField(allow_null=True)
    lastAt = serializers.DateTimeField(allow_null=True)
    groups = ShadowGroupOut(many=True)
    summary = serializers.CharField(help_text="The same in sentences.")


class ProposalDetailOut(ProposalOut):
    evidence = EvidenceOut(many=True)
    sampleEntries = serializers.ListField(child=serializers.DictField())
    shadowEvidence = ShadowEvidenceOut(
        help_text="What the candidate value would have done on live traffic while the proposal was pending "
        "(the config's shadow), and the reviewers' verdicts on those decisions."
    )
    canary = serializers.DictField(allow_null=True, help_text="Its canary rollout (GET /canaries/{id}), if any.")


class ProposalDecisionOut(ProposalOut):
    configVersion = serializers.IntegerField(help_text="The live config version after the decision.")


class AuditEventOut(serializers.Serializer):
    id = serializers.IntegerField()
    at = serializers.DateTimeField()
    kind = serializers.CharField()
    agentId = serializers.CharField()
    thresholdName = serializers.CharField()
    actor = serializers.CharField()
    before = serializers.JSONField(allow_null=True)
    after = serializers.JSONField(allow_null=True)
    proposalId = serializers.IntegerField(allow_null=True)
    runId = serializers.IntegerField(allow_null=True)
    configVersion = serializers.IntegerField(allow_null=True)
    evidenceEntryIds = serializers.ListField(child=serializers.CharField())
    detail = serializers.DictField()
    message = serializers.CharField()


class AuditListOut(serializers.Serializer):
    results = AuditEventOut(many=True)


PROPOSAL_ID = OpenApiParameter("proposal_id", int, OpenApiParameter.PATH, description="The proposal's id.")
ERRORS = {
    400: OpenApiResponse(ErrorSerializer, description="Bad input; the message names the field."),
    401: OpenApiResponse(ErrorSerializer, description="No or unknown credentials."),
    403: OpenApiResponse(
        ErrorSerializer,
        description="Not an approver or staff, not one of the agent's designated approvers (code "
        "not_designated_approver; the message names them), or deciding your own proposal.",
    ),
    404: OpenApiResponse(ErrorSerializer, description="Unknown agent or proposal."),
}


class ManualProposalInput(serializers.Serializer):
    thresholdName = serializers.CharField(max_length=100)
    proposedValue = serializers.FloatField()
    rationale = serializers.CharField(max_length=4000)


class ProposalListApi(APIView):
    @extend_schema(
        summary="An agent's proposals, newest first",
        responses={200: ProposalListOut, **ERRORS},
        parameters=[OpenApiParameter("status", str, enum=[s.value for s in Proposal.Status])],
    )
    def get(self, request: Request, agent_id: str) -> Response:
        require_approver_or_staff(request)
        agent = agent_get(agent_id=agent_id)
        status = request.query_params.get("status") or None
        if status is not None and status not in Proposal.Status.values:
            raise ValidationFailed(f"status must be one of {', '.join(Proposal.Status.values)}", field="status")
        live = config_get_live(agent=agent)
        proposals = proposals_list(agent=agent, status=status)
        return Response(
            {"results": [proposal_render(p, live_value=live.thresholds.get(p.threshold_name)) for p in proposals]}
        )

    @extend_schema(
        summary="Propose a change by hand; another approver must decide it, and the change guard applies",
        request=ManualProposalInput,
        responses={
            201: ProposalDetailOut,
            409: OpenApiResponse(ErrorSerializer, description="The agent's config is locked."),
            **ERRORS,
        },
    )
    def post(self, request: Request, agent_id: str) -> Response:
        require_approver_or_staff(request)
        agent = agent_get(agent_id=agent_id)
        data = ManualProposalInput(data=request.data)
        data.is_valid(raise_exception=True)
        proposal = proposal_create_manual(
            agent=agent,
            threshold_name=data.validated_data["thresholdName"],
            proposed_value=data.validated_data["proposedValue"],
            rationale=data.validated_data["rationale"],
            actor=request.user,
            now=timezone.now(),
        )
        return Response(proposal_detail_render(proposal_get(proposal_id=proposal.pk)), status=201)


def proposal_detail_render(proposal: Proposal) -> dict[str, Any]:
    live = config_get_live(agent=proposal.agent)
    body = proposal_render(proposal, live_value=live.thresholds.get(proposal.threshold_name))
    evidence = list(proposal.evidence.order_by("id").values_list("entry_id", "kind"))
    rendered = {
        e["id"]: e for e in entries_render(agent=proposal.agent, entry_ids=[entry_id for entry_id, _ in evidence])
    }
    body["evidence"] = [
        {"entryId": entry_id, "kind": kind, "entry": rendered.get(entry_id)} for entry_id, kind in evidence
    ]
    body["sampleEntries"] = entries_render(agent=proposal.agent, entry_ids=proposal_sample_ids(proposal=proposal))
    body["shadowEvidence"] = shadow_evidence(proposal=proposal).as_json()
    canary = canary_of(proposal=proposal)
    body["canary"] = canary_render(canary) if canary is not None else None
    return body


class ProposalDetailApi(APIView):
    @extend_schema(
        summary="One proposal with its evidence (the cited entries in the ActionLogEntry shape)",
        responses={200: ProposalDetailOut, **ERRORS},
        parameters=[PROPOSAL_ID],
    )
    def get(self, request: Request, proposal_id: str) -> Response:
        require_approver_or_staff(request)
        return Response(proposal_detail_render(proposal_get(proposal_id=proposal_id)))


class DecisionInput(serializers.Serializer):
    decision = serializers.ChoiceField(choices=["accept", "reject", "modify"])
    value = serializers.FloatField(required=False, allow_null=True, help_text="Required for modify.")
    rationale = serializers.CharField(max_length=4000, help_text="Why; required, and kept in the audit trail.")
    canary = serializers.JSONField(
        required=False,
        allow_null=True,
        help_text='With accept or modify: true, or {"share": 0.01..0.5, "days": 1/24..28} (defaults 0.2 and 7), '
        "to make the value live for that share of sessions only. The watchdog then compares the two arms over the "
        "same days and promotes the change to everyone, aborts it, or calls it inconclusive when time runs out. "
        "Only with the sign-off that makes the change.",
    )


class ProposalDecisionApi(APIView):
    @extend_schema(
        summary="Accept, reject or modify a proposal. Accept and modify sign off a value; on the agent's "
        "requiredApprovals-th sign-off (the first, by default) it goes live as a new config version. A modify "
        "restarts the count on its value; a reject rejects at once",
        request=DecisionInput,
        parameters=[PROPOSAL_ID],
        responses={
            200: ProposalDecisionOut,
            409: OpenApiResponse(
                ErrorSerializer,
                description="Already decided (by whom), expired or superseded; or you approved it already "
                "(code already_approved: how many more are needed from other approvers).",
            ),
            **ERRORS,
        },
    )
    def post(self, request: Request, proposal_id: str) -> Response:
        data = DecisionInput(data=request.data)
        data.is_valid(raise_exception=True)
        proposal = proposal_get(proposal_id=proposal_id)
        decided = proposal_decide(
            proposal=proposal,
            actor=request.user,
            decision=data.validated_data["decision"],
            rationale=data.validated_data.get("rationale", ""),
            value=data.validated_data.get("value"),
            now=timezone.now(),
            canary=Rollout.parse(data.validated_data.get("canary")),
        )
        live = config_get_live(agent=decided.agent)
        body = proposal_render(decided, live_value=live.thresholds.get(decided.threshold_name))
        body["configVersion"] = live.version
        return Response(body)


class CommentInput(serializers.Serializer):
    text = serializers.CharField(max_length=4000, help_text="The comment; required, at most 4,000 characters.")


class DiscussionOut(serializers.Serializer):
    results = AuditEventOut(many=True, help_text="Oldest first: proposal.created, comments, sign-offs, decision.")


class ProposalCommentsApi(APIView):
    @extend_schema(
        summary="A proposal's discussion: its comments in order with its sign-offs and decision",
        parameters=[PROPOSAL_ID],
        responses={200: DiscussionOut, **ERRORS},
    )
    def get(self, request: Request, proposal_id: str) -> Response:
        require_approver_or_staff(request)
        proposal = proposal_get(proposal_id=proposal_id)
        return Response({"results": [audit_event_render(e) for e in proposal_thread(proposal)]})

    @extend_schema(
        summary="Comment on a proposal (approvers and admins): an audit row, emailed to the agent's approvers",
        request=CommentInput,
        parameters=[PROPOSAL_ID],
        responses={201: AuditEventOut, **ERRORS},
    )
    def post(self, request: Request, proposal_id: str) -> Response:
        data = CommentInput(data=request.data)
        data.is_valid(raise_exception=True)
        proposal = proposal_get(proposal_id=proposal_id)
        event = proposal_comment(
            proposal=proposal, actor=request.user, text=data.validated_data["text"], now=timezone.now()
        )
        return Response(audit_event_render(event), status=201)


class LockInput(serializers.Serializer):
    rationale = serializers.CharField(max_length=4000)


class LockOut(serializers.Serializer):
    agentId = serializers.CharField()
    locked = serializers.BooleanField()
    lockedAt = serializers.DateTimeField(allow_null=True)
    lockedBy = serializers.CharField(allow_null=True)
    rationale = serializers.CharField(help_text="Why it was locked; empty when unlocked.")


LOCK_ERRORS = {409: OpenApiResponse(ErrorSerializer, description="Locked already / not locked."), **ERRORS}


class AgentLockApi(APIView):
    @extend_schema(summary="Whether the agent's config is locked", responses={200: LockOut, **ERRORS})
    def get(self, request: Request, agent_id: str) -> Response:
        require_approver_or_staff(request)
        return Response(lock_render(agent_get(agent_id=agent_id)))

    @extend_schema(
        summary="Lock the agent's config: the tuner reports but proposes nothing; only rollbacks change it",
        request=LockInput,
        responses={200: LockOut, **LOCK_ERRORS},
    )
    def post(self, request: Request, agent_id: str) -> Response:
        agent = agent_get(agent_id=agent_id)
        data = LockInput(data=request.data)
        data.is_valid(raise_exception=True)
        locked = agent_config_lock(
            agent=agent, actor=request.user, rationale=data.validated_data["rationale"], now=timezone.now()
        )
        return Response(lock_render(locked))


class AgentUnlockApi(APIView):
    @extend_schema(summary="Unlock the agent's config", request=LockInput, responses={200: LockOut, **LOCK_ERRORS})
    def post(self, request: Request, agent_id: str) -> Response:
        agent = agent_get(agent_id=agent_id)
        data = LockInput(data=request.data)
        data.is_valid(raise_exception=True)
        unlocked = agent_config_unlock(
            agent=agent, actor=request.user, rationale=data.validated_data["rationale"], now=timezone.now()
        )
        return Response(lock_render(unlocked))


@lagging_reads()  # an export: the events may be seconds behind the primary
def audit_csv(events: Any, filename: str) -> HttpResponse:
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    writer = csv.writer(response)
    writer.writerow(AUDIT_CSV_COLUMNS)
    for event in events.iterator():
        row = audit_event_render(event)
        writer.writerow([_csv_cell(row[c]) for c in AUDIT_CSV_COLUMNS])
    return response


def _csv_cell(value: Any) -> Any:
    import json

    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return value


class AuditTrailApi(APIView):
    @extend_schema(
        summary="The audit trail, oldest first; ?export=csv for a CSV file",
        responses={
            (200, "application/json"): AuditListOut,
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="With ?export=csv: one row an event."),
            **ERRORS,
        },
        parameters=[
            OpenApiParameter("agentId", str),
            OpenApiParameter("threshold", str),
            OpenApiParameter("export", str, enum=["csv"]),
        ],
    )
    def get(self, request: Request) -> Response | HttpResponse:
        require_approver_or_staff(request)
        agent_id = request.query_params.get("agentId")
        agent = agent_get(agent_id=agent_id) if agent_id else None
        events = audit_events(agent=agent, threshold=request.query_params.get("threshold") or None)
        export = request.query_params.get("export") or None
        if export not in (None, "csv"):
            raise ValidationFailed("export must be csv (or absent, for JSON)", field="export")
        if export == "csv":
            return audit_csv(events, f"audit-{agent_id or 'all'}.csv")
        return Response({"results": [audit_event_render(e) for e in events]})
