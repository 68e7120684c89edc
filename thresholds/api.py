"""What an agent reads at runtime: its live thresholds (with an ETag) and the history of its config versions."""

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from auditlog.serializers import ErrorSerializer
from loopsite.exceptions import Forbidden
from people.authentication import acting_agent
from people.roles import is_staff
from thresholds.models import Agent, ConfigVersion
from thresholds.selectors import LiveConfig, agent_get, config_get_live, config_versions_list


class ShadowSerializer(serializers.Serializer):
    proposalId = serializers.IntegerField(help_text="The pending proposal whose candidate value this is.")

    class Meta:
        help_text = "Also one key per threshold the proposal changes: {threshold name: candidate value}."


class CanarySerializer(serializers.Serializer):
    share = serializers.FloatField(help_text="The share of sessions in the canary arm, 0..1.")
    values = serializers.DictField(child=serializers.FloatField(), help_text="The canary arm's thresholds.")
    version = serializers.IntegerField(help_text="The canary arm's config version: its entries' configVersion.")


class LiveConfigSerializer(serializers.Serializer):
    agentId = serializers.CharField()
    version = serializers.IntegerField()
    activatedAt = serializers.DateTimeField()
    thresholds = serializers.DictField(child=serializers.FloatField(), help_text="{threshold name: value}")
    shadow = ShadowSerializer(
        required=False,
        help_text="Only while a proposal is pending: its candidate value(s), {threshold name: value, "
        '"proposalId": N}. Decide with ``thresholds`` as always; log what the candidate would have done as '
        "decision.shadowAction (and decision.shadowProposalId). An agent that ignores it loses nothing.",
    )
    canary = CanarySerializer(
        required=False,
        help_text="Only while a canary rollout serves: sessions whose draw (first 8 bytes of SHA-256 of "
        '"<version>:<sessionId>", big-endian, / 2**64) is below ``share`` decide with ``values`` and log '
        "configVersion = ``version``; the others use ``thresholds``. An agent that ignores it stays on "
        "``thresholds`` and its entries count as the control arm.",
    )


class OwnConfigSerializer(LiveConfigSerializer):
    actions = serializers.ListField(child=serializers.CharField(), help_text="The agent's actions, weakest first.")
    gatedActions = serializers.DictField(
        child=serializers.CharField(), help_text="{threshold name: the action it gates}"
    )


class ConfigVersionSerializer(serializers.Serializer):
    version = serializers.IntegerField()
    values = serializers.DictField(child=serializers.FloatField())
    source = serializers.ChoiceField(choices=ConfigVersion.Source.choices)  # type: ignore[assignment]
    proposalId = serializers.IntegerField(allow_null=True)
    approvedBy = serializers.CharField(allow_null=True, help_text="The approver's username.")
    reason = serializers.CharField()
    activatedAt = serializers.DateTimeField()
    supersededAt = serializers.DateTimeField(allow_null=True)
    isLive = serializers.BooleanField()
    rolledBackVersion = serializers.IntegerField(allow_null=True, help_text="For a rollback: the version undone.")


class ConfigVersionListSerializer(serializers.Serializer):
    agentId = serializers.CharField()
    results = ConfigVersionSerializer(many=True, help_text="Every version, newest first.")


ERRORS = {
    401: OpenApiResponse(ErrorSerializer, description="No or unknown credentials."),
    403: OpenApiResponse(ErrorSerializer, description="Another agent's key, or not staff."),
    404: OpenApiResponse(ErrorSerializer, description="Unknown agent."),
}


class IsAgentKeyOrStaff(BasePermission):
    message = "needs the agent's own key or a staff user"

    def has_permission(self, request: Any, view: Any) -> bool:
        return acting_agent(request) is not None or is_staff(request.user)


def agent_for_request(request: Request, agent_id: str) -> Agent:
    """The agent named in the URL (404 when unknown), refused (403) to another agent's key."""
    agent = agent_get(agent_id=agent_id)
    caller = acting_agent(request)
    if caller is not None and caller.pk != agent.pk:
        raise Forbidden(f"this key belongs to {caller.agent_id}, not {agent_id}", field="agentId")
    return agent


def _iso(value: Any) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def live_config_render(live: LiveConfig) -> dict[str, Any]:
    body: dict[str, Any] = {
        "agentId": live.agent_id,
        "version": live.version,
        "activatedAt": _iso(live.activated_at),
        "thresholds": dict(live.thresholds),
    }
    if live.shadow is not None:
        body["shadow"] = {**live.shadow, "proposalId": live.shadow_proposal_id}
    if live.canary is not None:
        canary = live.canary
        body["canary"] = {"share": canary.share, "values": dict(canary.values), "version": canary.version}
    return body


def config_version_render(version: ConfigVersion, numbers: dict[int, int]) -> dict[str, Any]:
    """``numbers`` maps the agent's version pks to their numbers, to name a rollback's target without a query."""
    return {
        "version": version.number,
        "values": {k: float(v) for k, v in version.values.items()},
        "source": version.source,
        "proposalId": version.proposal_id,
        "approvedBy": version.approved_by.get_username() if version.approved_by is not None else None,
        "reason": version.reason,
        "activatedAt": _iso(version.activated_at),
        "supersededAt": _iso(version.superseded_at),
        "isLive": version.is_live,
        "rolledBackVersion": numbers.get(version.rolled_back_version_id or 0),
    }


def _etag_matches(header: str, etag: str) -> bool:
    """If-None-Match: a list of tags, weak or strong, or ``*``."""
    tags = [t.strip() for t in header.split(",")]
    return "*" in tags or any(t.removeprefix("W/") == etag for t in tags)


class LiveConfigApi(APIView):
    permission_classes = [IsAgentKeyOrStaff]

    @extend_schema(
        operation_id="agents_config",
        summary="The live thresholds; send If-None-Match with the ETag to get 304 while they stand",
        responses={
            200: LiveConfigSerializer,
            304: OpenApiResponse(description="Unchanged since the ETag sent in If-None-Match."),
            **ERRORS,
        },
    )
    def get(self, request: Request, agent_id: str) -> Response:
        live = config_get_live(agent=agent_for_request(request, agent_id))
        headers = {"ETag": live.etag, "Cache-Control": "private, no-cache"}
        if _etag_matches(request.headers.get("If-None-Match", ""), live.etag):
            return Response(status=304, headers=headers)
        return Response(live_config_render(live), headers=headers)


class IsAgentKey(BasePermission):
    message = "only an agent key has a config of its own; people read /api/v1/agents/{agentId}/config"

    def has_permission(self, request: Any, view: Any) -> bool:
        return acting_agent(request) is not None


class OwnConfigApi(APIView):
    """What an agent client reads: whose key this is, and everything the decision rule needs."""

    permission_classes = [IsAgentKey]

    @extend_schema(
        operation_id="config_own",
        summary="The calling agent's live config, with its actions and the action each threshold gates "
        "(agent keys only); If-None-Match with the ETag gets 304",
        responses={
            200: OwnConfigSerializer,
            304: OpenApiResponse(description="Unchanged since the ETag sent in If-None-Match."),
            401: ERRORS[401],
            403: OpenApiResponse(ErrorSerializer, description="Not an agent key."),
        },
    )
    def get(self, request: Request) -> Response:
        agent = acting_agent(request)
        assert agent is not None  # the permission let only agent keys in
        live = config_get_live(agent=agent)
        headers = {"ETag": live.etag, "Cache-Control": "private, no-cache"}
        if _etag_matches(request.headers.get("If-None-Match", ""), live.etag):
            return Response(status=304, headers=headers)
        body = {**live_config_render(live), "actions": list(agent.actions), "gatedActions": dict(live.gates)}
        return Response(body, headers=headers)


class ConfigVersionsApi(APIView):
    permission_classes = [IsAgentKeyOrStaff]

    @extend_schema(
        operation_id="agents_config_versions",
        summary="Every config version of the agent, newest first",
        responses={200: ConfigVersionListSerializer, **ERRORS},
    )
    def get(self, request: Request, agent_id: str) -> Response:
        agent = agent_for_request(request, agent_id)
        versions = config_versions_list(agent=agent)
        numbers = {v.pk: v.number for v in versions}
        return Response({"agentId": agent.agent_id, "results": [config_version_render(v, numbers) for v in versions]})
