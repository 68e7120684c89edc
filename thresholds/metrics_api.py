"""GET /api/v1/agents/{agentId}/metrics/weekly?weeks=N: the dashboard's figures, one row a week."""

from typing import Any

from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from auditlog.serializers import ErrorSerializer
from loopsite.exceptions import ValidationFailed
from loopsite.replica import lagging_reads
from people.roles import is_reviewer, is_staff
from thresholds.metrics import MAX_WEEKS, weekly_metrics
from thresholds.selectors import agent_get

DEFAULT_WEEKS = 8


class WeeklyMetricsRowSerializer(serializers.Serializer):
    weekStart = serializers.DateField(help_text="Monday of the ISO week, in the agent's timezone.")
    decisions = serializers.IntegerField()
    queued = serializers.IntegerField(help_text="Decisions queued for review (fired, or sampled).")
    responses = serializers.IntegerField()
    responseRate = serializers.FloatField(allow_null=True)
    dismissalRate = serializers.FloatField(allow_null=True)
    escalationRate = serializers.FloatField(allow_null=True)
    modificationRate = serializers.FloatField(allow_null=True)
    approvalRate = serializers.FloatField(allow_null=True)
    proposals = serializers.IntegerField(help_text="Proposals made in the week.")
    accepted = serializers.IntegerField(help_text="Proposals accepted or modified in the week.")
    decided = serializers.IntegerField(help_text="Proposals decided in the week.")
    acceptanceRate = serializers.FloatField(allow_null=True)
    rollbacks = serializers.IntegerField()
    configVersion = serializers.IntegerField(allow_null=True, help_text="The version live at the week's end.")


class WeeklyMetricsSerializer(serializers.Serializer):
    agentId = serializers.CharField()
    results = WeeklyMetricsRowSerializer(many=True, help_text="Oldest first, the current week last.")


class IsStaffOrReviewer(BasePermission):
    message = "needs a staff user, an approver or a reviewer"

    def has_permission(self, request: Any, view: Any) -> bool:
        return is_staff(request.user) or is_reviewer(request.user)


def weeks_param(raw: str | None) -> int:
    if raw in (None, ""):
        return DEFAULT_WEEKS
    try:
        weeks = int(str(raw))
    except ValueError:
        raise ValidationFailed("weeks must be a whole number", field="weeks") from None
    if not 1 <= weeks <= MAX_WEEKS:
        raise ValidationFailed(f"weeks must be between 1 and {MAX_WEEKS}", field="weeks")
    return weeks


class WeeklyMetricsApi(APIView):
    permission_classes = [IsStaffOrReviewer]

    @extend_schema(
        operation_id="agents_metrics_weekly",
        summary="The four numbers to watch, one row a week",
        parameters=[
            OpenApiParameter(
                "weeks",
                {"type": "integer", "minimum": 1, "maximum": MAX_WEEKS},
                description=f"How many weeks (1-{MAX_WEEKS}, default 8).",
            )
        ],
        responses={
            200: WeeklyMetricsSerializer,
            400: OpenApiResponse(ErrorSerializer, description="Bad weeks."),
            403: OpenApiResponse(ErrorSerializer, description="An agent key, or a user without a role."),
            404: OpenApiResponse(ErrorSerializer, description="Unknown agent."),
        },
    )
    @lagging_reads()  # the handler only: authentication and throttling have read from the primary
    def get(self, request: Request, agent_id: str) -> Response:
        weeks = weeks_param(request.query_params.get("weeks"))
        agent = agent_get(agent_id=agent_id)
        rows = weekly_metrics(agent=agent, weeks=weeks, now=timezone.now())
        return Response({"agentId": agent.agent_id, "results": [r.as_dict() for r in rows]})
