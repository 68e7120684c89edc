"""The decision log's HTTP API: log decisions (one or a batch), read them back, record a human response.

Views parse the request, make one service call and render; the checks live in ``auditlog.entry`` and
``auditlog.services``. Bodies are read and decoded here (not by DRF's parser) so that oversized bodies are
refused before parsing and NaN or infinite numbers reach the entry checks, which name the field at fault.
"""

import gc
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson
from django.conf import settings
from django.http import HttpResponse, StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from auditlog import serializers as s
from auditlog.entry import parse_time
from auditlog.evaluation import CONTENT_TYPES, FORMATS, evaluation_stream, reviewed
from auditlog.exceptions import InvalidEntry
from auditlog.render import entry_render, entry_render_with_history
from auditlog.selectors import DecisionFilters, decision_page, decision_read
from auditlog.services import decision_log, decision_log_batch, response_history, response_record
from loopsite.exceptions import DomainError, Forbidden, NotFound
from loopsite.input_checks import json_load
from people.authentication import acting_agent, seen_with_key
from people.roles import is_reviewer, is_staff
from thresholds.selectors import agent_get

MAX_BATCH_ENTRIES = 1000
DEFAULT_PAGE = 100
MAX_PAGE = 1000


class RequestTooLarge(DomainError):
    status_code = 413
    code = "too_large"


ERRORS = {
    400: OpenApiResponse(s.ErrorSerializer, description="Bad input; `field` names it."),
    401: OpenApiResponse(s.ErrorSerializer, description="No or unknown credentials."),
    403: OpenApiResponse(s.ErrorSerializer, description="Not allowed for this key or user."),
}


# --- Who may do what ----------------------------------------------------------------------------------------


class IsAgentKey(BasePermission):
    message = "only an agent key may log decisions"

    def has_permission(self, request: Any, view: Any) -> bool:
        return acting_agent(request) is not None


class CanReadDecisions(BasePermission):
    message = "reading decisions needs an agent key, staff, or the reviewer role"

    def has_permission(self, request: Any, view: Any) -> bool:
        return acting_agent(request) is not None or is_staff(request.user) or is_reviewer(request.user)


class IsReviewer(BasePermission):
    message = "responding needs a person with the reviewer role (session or personal token), not an agent key"

    def has_permission(self, request: Any, view: Any) -> bool:
        return acting_agent(request) is None and is_reviewer(request.user)


# --- Request parsing ----------------------------------------------------------------------------------------


def json_body(request: Request, *, limit: int) -> Any:
    """The decoded JSON body; 413 above ``limit`` bytes, checked on Content-Length before anything is read."""
    declared = request.META.get("CONTENT_LENGTH") or "0"
    if not declared.isdigit():
        raise InvalidEntry("Content-Length is not a number", field="body")
    if int(declared) > limit:
        raise RequestTooLarge(f"body is larger than {limit} bytes", field="body")
    body = request.body
    if len(body) > limit:
        raise RequestTooLarge(f"body is larger than {limit} bytes", field="body")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        # orjson refuses what the standard parser reads (NaN, unpaired surrogates, integers past 64 bits) or
        # what it reports differently: the standard parser decodes it, so the entry checks name the field.
        return json_load(body)


def _json(payload: Any, *, status: int = 200) -> HttpResponse:
    """The response of the logging views, encoded by orjson: the JSON DRF's renderer writes (compact, UTF-8), in
    a fraction of the time (a batch answers 1000 results). A text orjson cannot write, a lone surrogate a client
    sent and the answer names it by (an invalid entry's id), goes out as the JSON escape it came in as."""
    try:
        content = orjson.dumps(payload)
    except orjson.JSONEncodeError:
        content = json.dumps(payload, separators=(",", ":")).encode()
    return HttpResponse(content, status=status, content_type="application/json")


def _query_time(request: Request, name: str, now: datetime) -> datetime | None:
    value = request.query_params.get(name)
    if value is None or value == "":
        return None
    # A "+" in a query string arrives as a space when the client did not escape it.
    return parse_time(value.replace(" ", "+"), name, now=now, max_future=None)


def _query_bool(request: Request, name: str) -> bool | None:
    value = request.query_params.get(name)
    if value is None or value == "":
        return None
    lowered = value.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise InvalidEntry(f"{name} must be true or false", field=name)


def _query_limit(request: Request) -> int:
    value = request.query_params.get("limit")
    if value is None or value == "":
        return DEFAULT_PAGE
    if not value.isdigit() or not 1 <= int(value) <= MAX_PAGE:
        raise InvalidEntry(f"limit must be a whole number from 1 to {MAX_PAGE}", field="limit")
    return int(value)


def _filters(request: Request, now: datetime) -> DecisionFilters:
    agent = acting_agent(request)
    agent_id = request.query_params.get("agentId") or None
    if agent is not None:
        if agent_id is not None and agent_id != agent.agent_id:
            raise Forbidden(f"this key reads {agent.agent_id}'s decisions only", field="agentId")
        agent_pk: int | None = agent.pk
    else:
        agent_pk = agent_get(agent_id=agent_id).pk if agent_id is not None else None
    return DecisionFilters(
        agent_pk=agent_pk,
        since=_query_time(request, "from", now),
        until=_query_time(request, "to", now),
        action=request.query_params.get("action") or None,
        has_response=_query_bool(request, "hasHumanResponse"),
    )


# --- Views --------------------------------------------------------------------------------------------------


class DecisionListCreateApi(APIView):
    def get_permissions(self) -> list[BasePermission]:
        return [IsAgentKey()] if self.request.method == "POST" else [CanReadDecisions()]

    @extend_schema(
        operation_id="decisions_list",
        summary="List decisions, newest first",
        parameters=[
            OpenApiParameter("agentId", str, description="An agent key sees its own agent only."),
            OpenApiParameter("from", str, description="ISO 8601 with offset; inclusive."),
            OpenApiParameter("to", str, description="ISO 8601 with offset; exclusive."),
            OpenApiParameter("action", str),
            OpenApiParameter("hasHumanResponse", bool),
            OpenApiParameter("cursor", str, description="The `next` of the previous page."),
            OpenApiParameter(
                "limit",
                {"type": "integer", "minimum": 1, "maximum": MAX_PAGE},
                description=f"1 to {MAX_PAGE}, default {DEFAULT_PAGE}.",
            ),
        ],
        responses={
            200: s.DecisionPageSerializer,
            404: OpenApiResponse(s.ErrorSerializer, description="Unknown agentId."),
            **ERRORS,
        },
    )
    def get(self, request: Request) -> Response:
        now = timezone.now()
        rows, cursor = decision_page(
            filters=_filters(request, now), cursor=request.query_params.get("cursor"), limit=_query_limit(request)
        )
        return Response({"results": [entry_render(d) for d in rows], "next": cursor})

    @extend_schema(
        operation_id="decisions_create",
        summary="Log one decision (idempotent on id)",
        request=s.EntryInSerializer,
        responses={
            201: OpenApiResponse(s.EntryOutSerializer, description="Stored."),
            200: OpenApiResponse(s.EntryOutSerializer, description="The same id with the same content: stored."),
            409: OpenApiResponse(s.ErrorSerializer, description="The id exists with other content."),
            413: OpenApiResponse(s.ErrorSerializer, description="Body over 1 MiB."),
            **ERRORS,
        },
    )
    def post(self, request: Request) -> HttpResponse:
        raw = json_body(request, limit=settings.API_MAX_BODY_BYTES)
        status, decision = decision_log(
            raw=raw, now=timezone.now(), acting_agent=acting_agent(request), seen=seen_with_key(request)
        )
        return _json(entry_render(decision), status=201 if status == "created" else 200)


class DecisionBatchApi(APIView):
    permission_classes = [IsAgentKey]
    # The time the entries are checked and stored against: the wall clock, or, for the simulation's agent that
    # logs through this view in-process, its simulated clock (``DecisionBatchApi.as_view(clock=...)``).
    clock: Callable[[], datetime] | None = None

    @extend_schema(
        operation_id="decisions_batch",
        summary="Log up to 1000 decisions; valid ones are stored even when others are not",
        request=s.BatchInSerializer,
        responses={
            200: s.BatchOutSerializer,
            413: OpenApiResponse(s.ErrorSerializer, description="Body over 10 MiB."),
            **ERRORS,
        },
    )
    def post(self, request: Request) -> HttpResponse:
        # A batch makes tens of thousands of short-lived objects and no reference cycles: the cyclic collector,
        # set off every 700 allocations, would only walk the heap again and again (a tenth of the batch's time).
        collecting = gc.isenabled()
        gc.disable()
        try:
            return self._log(request)
        finally:
            if collecting:
                gc.enable()

    def _log(self, request: Request) -> HttpResponse:
        body = json_body(request, limit=settings.API_MAX_BATCH_BODY_BYTES)
        entries = body.get("entries") if isinstance(body, dict) else None
        if not isinstance(entries, list):
            raise InvalidEntry("entries must be a list of entries", field="entries")
        if len(entries) > MAX_BATCH_ENTRIES:
            raise InvalidEntry(f"entries holds more than {MAX_BATCH_ENTRIES} entries", field="entries")
        now = self.clock() if self.clock is not None else timezone.now()
        results = decision_log_batch(
            entries=entries, now=now, acting_agent=acting_agent(request), seen=seen_with_key(request)
        )
        return _json({"results": [r.as_dict() for r in results]})


# Ids are unique per agent: the parameter that says whose id the path names, and what happens without it.
AGENT_OF_ID = OpenApiParameter(
    "agentId",
    str,
    description=(
        "The agent whose id `{id}` is (ids are unique per agent). An agent key always reads its own agent's "
        "decisions: another agent's id is 404, as one nobody used. A person may leave it out while only one agent "
        "uses the id; when several do, the answer is 409 naming them."
    ),
)
NOT_FOUND_OR_AMBIGUOUS = {
    404: OpenApiResponse(
        s.ErrorSerializer, description="No such decision (for an agent key: none of its own with this id)."
    ),
    409: OpenApiResponse(
        s.ErrorSerializer,
        description="For a person: the id is used by more than one agent and agentId was left out; `field` is agentId.",
    ),
}


def _agent_of_id(request: Request) -> str | None:
    return request.query_params.get("agentId") or None


class DecisionDetailApi(APIView):
    permission_classes = [CanReadDecisions]

    @extend_schema(
        operation_id="decisions_get",
        summary="One decision with its human response, if any, and every answer it was given",
        parameters=[AGENT_OF_ID],
        responses={200: s.EntryDetailOutSerializer, **NOT_FOUND_OR_AMBIGUOUS, **ERRORS},
    )
    def get(self, request: Request, entry_id: str) -> Response:
        decision = decision_read(entry_id=entry_id, agent=acting_agent(request), agent_id=_agent_of_id(request))
        return Response(entry_render_with_history(decision, response_history(decision)))


class DecisionResponseApi(APIView):
    permission_classes = [IsReviewer]

    @extend_schema(
        operation_id="decisions_respond",
        summary=(
            "Record the human response; a second gets 409 unless it says amends: its author within 24 h, or an "
            "approver, replaces the label, and every answer stays in responseHistory"
        ),
        request=s.ResponseInSerializer,
        parameters=[AGENT_OF_ID],
        responses={
            201: s.EntryOutSerializer,
            404: NOT_FOUND_OR_AMBIGUOUS[404],
            409: OpenApiResponse(
                s.ErrorSerializer,
                description=(
                    "Already responded (send amends), or the id is used by more than one agent and agentId was "
                    "left out (`field` is agentId)."
                ),
            ),
            413: s.ErrorSerializer,
            **ERRORS,
        },
    )
    def post(self, request: Request, entry_id: str) -> Response:
        raw = json_body(request, limit=settings.API_MAX_BODY_BYTES)
        amends = raw.get("amends", False) if isinstance(raw, dict) else False
        if not isinstance(amends, bool):
            raise InvalidEntry("amends must be true or false", field="amends")
        decision = response_record(
            entry_id=entry_id,
            agent_id=_agent_of_id(request),
            raw=raw,
            responder_id=request.user.get_username(),
            now=timezone.now(),
            field_prefix="",
            amends=amends,
            actor=request.user,
        )
        return Response(entry_render_with_history(decision, response_history(decision)), status=201)


class IsPerson(BasePermission):
    message = "the evaluation set is for people with a role (reviewer, approver, admin), not agent keys"

    def has_permission(self, request: Any, view: Any) -> bool:
        return acting_agent(request) is None and (is_staff(request.user) or is_reviewer(request.user))


class EvaluationSetApi(APIView):
    permission_classes = [IsPerson]

    @extend_schema(
        operation_id="evaluation_set",
        summary="An agent's reviewed decisions with their current label, as CSV or JSON Lines",
        description=(
            "Every decision of the agent with a human response, oldest first, with the label the tuner learns "
            "from (`approve`, `dismiss` or `escalate`, after any amendment): to build an evaluation set from the "
            "team's own verdicts. `fmt` is `csv` (features and matchedRules as JSON in their cells) or `jsonl`."
        ),
        parameters=[
            OpenApiParameter("fmt", str, OpenApiParameter.PATH, enum=list(FORMATS)),
            OpenApiParameter("from", str, description="ISO 8601 with offset, by decision time; inclusive."),
            OpenApiParameter("to", str, description="ISO 8601 with offset; exclusive."),
        ],
        responses={
            (200, "text/csv"): OpenApiResponse(str, description="CSV with a header row."),
            (200, "application/x-ndjson"): OpenApiResponse(str, description="One JSON object a line."),
            404: OpenApiResponse(s.ErrorSerializer, description="Unknown agent or format."),
            **ERRORS,
        },
    )
    def get(self, request: Request, agent_id: str, fmt: str) -> StreamingHttpResponse:
        if fmt not in FORMATS:
            raise NotFound(f"no format {fmt!r}: use evaluation-set.csv or evaluation-set.jsonl", field="fmt")
        agent = agent_get(agent_id=agent_id)
        now = timezone.now()
        decisions = reviewed(agent, since=_query_time(request, "from", now), until=_query_time(request, "to", now))
        response = StreamingHttpResponse(evaluation_stream(decisions, fmt), content_type=CONTENT_TYPES[fmt])
        response["Content-Disposition"] = f'attachment; filename="evaluation-{agent.agent_id}.{fmt}"'
        return response
