"""The tuner-run endpoints: staff and approvers read an agent's cycles; staff start one now (202, run on commit)."""

from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from people.authentication import acting_agent
from people.roles import is_approver, is_staff
from thresholds.selectors import agent_get
from tuner.models import TunerRun
from tuner.selectors import tuner_runs_list
from tuner.services import tuner_run_request

MAX_RUNS = 104


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
    startedAt = serializers.DateTimeField(source="started_at")
    finishedAt = serializers.DateTimeField(source="finished_at")
    durationSeconds = serializers.FloatField(source="duration_seconds")
    promptHash = serializers.CharField(source="prompt_hash")
    requestedBy = serializers.CharField(source="requested_by.username", default=None)

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
            "finishedAt",
            "durationSeconds",
        ]


class TunerRunsApi(APIView):
    permission_classes = [CanReadRuns]

    @extend_schema(
        responses=inline_serializer("TunerRunList", {"results": TunerRunSerializer(many=True)}),
        summary="An agent's tuner cycles, newest first, each with the seed's output JSON",
    )
    def get(self, request: Request, agent_id: str) -> Response:
        agent = agent_get(agent_id=agent_id)
        runs = tuner_runs_list(agent=agent)[:MAX_RUNS]
        return Response({"results": TunerRunSerializer(runs, many=True).data})

    @extend_schema(
        request=None,
        responses={202: inline_serializer("TunerRunStarted", {"id": serializers.IntegerField()})},
        summary="Run a cycle now (staff); the worker runs it after this request commits",
    )
    def post(self, request: Request, agent_id: str) -> Response:
        agent = agent_get(agent_id=agent_id)
        run = tuner_run_request(agent=agent, now=timezone.now(), requested_by=request.user)
        return Response({"id": run.pk, "agentId": agent.agent_id, "cycle": run.cycle, "status": run.status}, status=202)
