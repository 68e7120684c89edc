"""The tuner-run endpoints: staff and approvers read an agent's cycles; staff start one now (202, run on commit)."""

from typing import Any

from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from auditlog.serializers import ErrorSerializer
from people.authentication import acting_agent
from people.roles import is_approver, is_staff
from thresholds.selectors import agent_get
from tuner.models import TunerRun
from tuner.selectors import tuner_runs_list
from tuner.services import tuner_run_request

MAX_RUNS = 104
ERRORS = {
    401: OpenApiResponse(ErrorSerializer, description="No or unknown credentials."),
    403: OpenApiResponse(ErrorSerializer, description="Not staff or an approver (staff only to start one)."),
    404: OpenApiResponse(ErrorSerializer, description="Unknown agent."),
}


class CanReadRuns(BasePermission):
    message = "tuner runs are for staff and approvers"

    def has_permission(self, request: Any, view: Any) -> bool:
        if acting_agent(request) is not None:
            return False
        if request.method == "POST":
            return is_staff(request.user)
        return is_staff(request.user) or is_approver(request.user)


class TunerRunSerializer(serializers.ModelSerializer[TunerRun]):
    agentId = serializers.CharField(source="agent.agent_id")
    windowStart = serializers.DateTimeField(source="window_start")
    windowEnd = serializers.DateTimeField(source="window_end")
    createdAt = serializers.DateTimeField(source="created_at")
    startedAt = serializers.DateTimeField(source="started_at", allow_null=True)
    heartbeatAt = serializers.DateTimeField(
        source="heartbeat_at",
        allow_null=True,
        help_text="The computing worker's last heartbeat; a running run three beats behind is taken over.",
    )
    finishedAt = serializers.DateTimeField(source="finished_at", allow_null=True)
    durationSeconds = serializers.FloatField(source="duration_seconds", allow_null=True)
    promptHash = serializers.CharField(source="prompt_hash")
    requestedBy = serializers.CharField(
        source="requested_by.username", default=None, allow_null=True, help_text="Who asked for it; null for beat."
    )
    output = serializers.JSONField(allow_null=True, help_text="The seed's output format; null until it is done.")

    class Meta:
        model = TunerRun
        fields = [
            "id",
            "agentId",
            "cycle",
            "status",
            "generator",
            "windowStart",
            "windowEnd",
            "output",
            "notes",
            "errors",
            "promptHash",
            "requestedBy",
            "createdAt",
            "startedAt",
            "heartbeatAt",
            "finishedAt",
            "durationSeconds",
        ]


class TunerRunsApi(APIView):
    permission_classes = [CanReadRuns]

    @extend_schema(
        responses={200: inline_serializer("TunerRunList", {"results": TunerRunSerializer(many=True)}), **ERRORS},
        summary="An agent's tuner cycles, newest first, each with the seed's output JSON",
    )
    def get(self, request: Request, agent_id: str) -> Response:
        agent = agent_get(agent_id=agent_id)
        runs = tuner_runs_list(agent=agent)[:MAX_RUNS]
        return Response({"results": TunerRunSerializer(runs, many=True).data})

    @extend_schema(
        request=None,
        responses={
            202: inline_serializer(
                "TunerRunStarted",
                {
                    "id": serializers.IntegerField(),
                    "agentId": serializers.CharField(),
                    "cycle": serializers.DateField(),
                    "status": serializers.ChoiceField(choices=TunerRun.Status.values),
                },
            ),
            **ERRORS,
        },
        summary="Run a cycle now (staff); the worker runs it after this request commits",
        description=(
            "A cycle already done, or running in a worker that still heartbeats, is answered as it is and nothing is "
            "sent; a running cycle whose worker stopped heartbeating is sent again and taken over."
        ),
    )
    def post(self, request: Request, agent_id: str) -> Response:
        agent = agent_get(agent_id=agent_id)
        run = tuner_run_request(agent=agent, now=timezone.now(), requested_by=request.user)
        return Response({"id": run.pk, "agentId": agent.agent_id, "cycle": run.cycle, "status": run.status}, status=202)
