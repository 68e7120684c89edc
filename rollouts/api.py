"""API of canary rollouts: read one, promote or abort it by hand. Starting one is a proposal decision with
``"canary"`` (approvals.api.ProposalDecisionApi). Thin: parse, call one service or selector, render."""

from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from approvals.api import ERRORS, require_approver_or_staff
from approvals.exceptions import CanaryNotFound
from auditlog.serializers import ErrorSerializer
from rollouts.models import Canary
from rollouts.render import canary_render
from rollouts.services import canary_abort, canary_promote


def canary_get(canary_id: str) -> Canary:
    try:
        return Canary.objects.select_related("agent", "proposal", "version", "control", "result", "started_by").get(
            pk=int(canary_id)
        )
    except (Canary.DoesNotExist, ValueError):
        raise CanaryNotFound(f"no canary {canary_id}", field="id") from None


class ArmOut(serializers.Serializer):
    decisions = serializers.IntegerField()
    sessions = serializers.IntegerField()
    offArm = serializers.IntegerField(help_text="Sessions the shared hash puts in the other arm (should be 0).")


class CanaryOut(serializers.Serializer):
    id = serializers.IntegerField()
    agentId = serializers.CharField()
    proposalId = serializers.IntegerField()
    thresholdName = serializers.CharField()
    share = serializers.FloatField(help_text="The share of sessions in the canary arm.")
    version = serializers.IntegerField(help_text="The canary arm's config version.")
    controlVersion = serializers.IntegerField(help_text="The live version the other sessions run under.")
    values = serializers.DictField(child=serializers.FloatField())
    state = serializers.ChoiceField(choices=Canary.State.values)
    startedAt = serializers.DateTimeField()
    endsAt = serializers.DateTimeField()
    startedBy = serializers.CharField()
    endedAt = serializers.DateTimeField(allow_null=True)
    endedBy = serializers.CharField(allow_null=True, help_text="A username, 'watchdog' or 'rollback'.")
    resultVersion = serializers.IntegerField(allow_null=True, help_text="The live version its end made.")
    summary = serializers.CharField(help_text="The state and the last comparison of the arms, in sentences.")
    assessment = serializers.DictField(allow_null=True, help_text="The last comparison's figures.")
    arms = serializers.DictField(child=ArmOut(), help_text="canary and control: decisions and sessions so far.")


class CanaryEndInput(serializers.Serializer):
    rationale = serializers.CharField(max_length=4000, help_text="Why; required, and kept in the audit trail.")


ENDED = OpenApiResponse(
    ErrorSerializer, description="The canary was promoted or aborted already (by whom, in the message)."
)
CANARY_ID = OpenApiParameter("canary_id", int, OpenApiParameter.PATH, description="The canary's id.")


class CanaryDetailApi(APIView):
    @extend_schema(
        summary="One canary rollout: its arms, state and last comparison",
        responses={200: CanaryOut, **ERRORS},
        parameters=[CANARY_ID],
    )
    def get(self, request: Request, canary_id: str) -> Response:
        require_approver_or_staff(request)
        return Response(canary_render(canary_get(canary_id)))


class _CanaryEndApi(APIView):
    end = staticmethod(canary_promote)

    def post(self, request: Request, canary_id: str) -> Response:
        data = CanaryEndInput(data=request.data)
        data.is_valid(raise_exception=True)
        canary = canary_get(canary_id)
        type(self).end(
            canary=canary, now=timezone.now(), actor=request.user, rationale=data.validated_data["rationale"]
        )
        return Response(canary_render(canary_get(canary_id)))


class CanaryPromoteApi(_CanaryEndApi):
    end = staticmethod(canary_promote)

    @extend_schema(
        summary="Promote a running or inconclusive canary by hand: its value goes live for every session",
        request=CanaryEndInput,
        responses={200: CanaryOut, 409: ENDED, **ERRORS},
        parameters=[CANARY_ID],
    )
    def post(self, request: Request, canary_id: str) -> Response:
        return super().post(request, canary_id)


class CanaryAbortApi(_CanaryEndApi):
    end = staticmethod(canary_abort)

    @extend_schema(
        summary="Abort a running or inconclusive canary by hand: every session goes back to the control's values",
        request=CanaryEndInput,
        responses={200: CanaryOut, 409: ENDED, **ERRORS},
        parameters=[CANARY_ID],
    )
    def post(self, request: Request, canary_id: str) -> Response:
        return super().post(request, canary_id)
